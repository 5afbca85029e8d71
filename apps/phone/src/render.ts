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

function inline(text: string): (Node | string)[] {
  return text.split(/(`[^`\n]+`)/).map((part) => (part.length > 2 && part.startsWith("`") && part.endsWith("`") ? h("code", {}, part.slice(1, -1)) : part));
}

/** Renders markdown-ish text: code fences, inline code and paragraphs (an open fence renders as code). */
export function renderText(text: string): Node[] {
  const nodes: Node[] = [];
  const parts = text.split(/^```/m);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      const newline = part.indexOf("\n");
      const language = newline < 0 ? "" : part.slice(0, newline).trim();
      const code = newline < 0 ? "" : part.slice(newline + 1).replace(/\n$/, "");
      const attributes: Record<string, string> = { tabindex: "0" };
      if (language) attributes["data-language"] = language;
      nodes.push(h("pre", attributes, h("code", {}, code)));
      return;
    }
    const body = i > 0 ? part.replace(/^[^\n]*\n?/, "") : part;
    for (const paragraph of body.split(/\n{2,}/)) {
      if (!paragraph.trim()) continue;
      const lines = paragraph.split("\n");
      const p = h("p");
      lines.forEach((line, j) => {
        if (j > 0) p.append(h("br"));
        p.append(...inline(line));
      });
      nodes.push(p);
    }
  });
  return nodes;
}
