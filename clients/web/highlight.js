// A small Python highlighter: enough to make executableCode readable without a dependency.

const KEYWORDS = new Set(
  ("False None True and as assert async await break class continue def del elif else except finally for " +
    "from global if import in is lambda nonlocal not or pass raise return try while with yield match case")
    .split(" "),
);
const BUILTINS = new Set(
  ("abs all any bool dict enumerate filter float int len list map max min open print range reversed round " +
    "set sorted str sum tuple type zip isinstance super").split(" "),
);

const TOKEN = new RegExp(
  [
    /(?<comment>#[^\n]*)/,
    /(?<string>[rbfuRBFU]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?))/,
    /(?<decorator>@[\w.]+)/,
    /(?<number>\b(?:0[xob][\da-f_]+|\d[\d_]*(?:\.\d*)?(?:e[+-]?\d+)?j?|\.\d+(?:e[+-]?\d+)?j?)\b)/,
    /(?<word>\b[A-Za-z_]\w*\b)/,
  ]
    .map((r) => r.source)
    .join("|"),
  "gi",
);

const escape = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** HTML for `code` with <span class="tok-…"> around tokens; everything else escaped. */
export function highlightPython(code) {
  let html = "";
  let last = 0;
  let previousWord = "";
  for (const match of code.matchAll(TOKEN)) {
    html += escape(code.slice(last, match.index));
    const text = match[0];
    const groups = match.groups;
    let kind = null;
    if (groups.comment) kind = "comment";
    else if (groups.string) kind = "string";
    else if (groups.decorator) kind = "decorator";
    else if (groups.number) kind = "number";
    else if (KEYWORDS.has(text)) kind = "keyword";
    else if (previousWord === "def" || previousWord === "class") kind = "def";
    else if (BUILTINS.has(text)) kind = "builtin";
    html += kind ? `<span class="tok-${kind}">${escape(text)}</span>` : escape(text);
    if (groups.word) previousWord = text;
    last = match.index + text.length;
  }
  return html + escape(code.slice(last));
}
