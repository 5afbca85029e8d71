// How the model's text is split for display: code fences, inline code, paragraphs; never HTML.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseText } from "../src/render.js";

test("fenced code becomes a code block with its language", () => {
  assert.deepEqual(parseText("Here:\n```rust\nfn main() {}\n\nlet x = 1;\n```\nDone."), [
    { lines: [["Here:"]] },
    { language: "rust", code: "fn main() {}\n\nlet x = 1;" },
    { lines: [["Done."]] },
  ]);
});

test("a fence still open while the text streams is already code", () => {
  assert.deepEqual(parseText("a\n```js\nconsole.lo"), [{ lines: [["a"]] }, { language: "js", code: "console.lo" }]);
  assert.deepEqual(parseText("a\n```"), [{ lines: [["a"]] }, { language: "", code: "" }]);
});

test("inline code, line breaks and paragraphs", () => {
  assert.deepEqual(parseText("Run `ls -l` now\nthen <b>this</b>\n\nNext"), [
    { lines: [["Run ", { code: "ls -l" }, " now"], ["then <b>this</b>"]] },
    { lines: [["Next"]] },
  ]);
});
