// The model's text as readable DOM: fenced code blocks become <pre><code>, `inline code` <code>, and blank
// lines split paragraphs. Built from text nodes only: nothing the model writes is parsed as HTML.

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | boolean> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false) continue;
    element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children);
  return element;
}

/** A run of text, or inline code. */
export type Inline = string | { code: string };
export type Block = { code: string; language: string } | { lines: Inline[][] };

const inline = (line: string): Inline[] =>
  line
    .split(/(`[^`\n]+`)/)
    .filter((part) => part !== "")
    .map((part) => (part.length > 2 && part.startsWith("`") && part.endsWith("`") ? { code: part.slice(1, -1) } : part));

/** Splits markdown-ish text into code blocks and paragraphs; a fence still open (mid-stream) is code. */
export function parseText(text: string): Block[] {
  const blocks: Block[] = [];
  text.split(/^```/m).forEach((part, i) => {
    if (i % 2 === 1) {
      const newline = part.indexOf("\n");
      blocks.push({
        language: newline < 0 ? part.trim() : part.slice(0, newline).trim(),
        code: newline < 0 ? "" : part.slice(newline + 1).replace(/\n$/, ""),
      });
      return;
    }
    // After a closing fence, the rest of its line belongs to the fence.
    const body = i > 0 ? part.replace(/^[^\n]*\n?/, "") : part;
    for (const paragraph of body.split(/\n{2,}/)) {
      const trimmed = paragraph.replace(/^\n+|\n+$/g, "");
      if (trimmed.trim()) blocks.push({ lines: trimmed.split("\n").map(inline) });
    }
  });
  return blocks;
}

export function renderText(text: string): Node[] {
  return parseText(text).map((block) => {
    if ("code" in block) {
      const attributes: Record<string, string> = { tabindex: "0" };
      if (block.language) attributes["data-language"] = block.language;
      return h("pre", attributes, h("code", {}, block.code));
    }
    const p = h("p");
    block.lines.forEach((line, j) => {
      if (j > 0) p.append(h("br"));
      p.append(...line.map((part) => (typeof part === "string" ? part : h("code", {}, part.code))));
    });
    return p;
  });
}
