// A line of terminal output as a terminal shows it, as data for the log view (never markup):
// ANSI SGR colours, bold, dim, italic and underline become styled runs of text; every other
// escape sequence and control character is dropped; a carriage return's overwrite leaves the
// line's last state (a progress bar's 100 %, not each step to it).

// ESC [ params intermediates final (CSI: SGR when final is "m"), ESC ] … BEL/ST (OSC), ESC and
// one character, a lone ESC at the end; C0 controls but tab; and CR, handled apart.
const CONTROL = /\x1b(?:\[([0-?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~]|$)|[\x00-\x08\x0b-\x1f\x7f]/g;
const HAS_CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const PLAIN = Object.freeze({});
const CUBE = [0, 95, 135, 175, 215, 255];

/** xterm's 256 colours: 0-15 the palette (a class of the page's), the rest an rgb() value. */
function color256(n) {
  if (n < 16) return n;
  if (n >= 232) {
    const grey = 8 + (n - 232) * 10;
    return `rgb(${grey}, ${grey}, ${grey})`;
  }
  const i = n - 16;
  return `rgb(${CUBE[Math.floor(i / 36)]}, ${CUBE[Math.floor(i / 6) % 6]}, ${CUBE[i % 6]})`;
}

/** The style after an SGR sequence's parameters ("1;31", "38;5;208", "" for a reset). */
function sgr(style, params) {
  const codes = params.split(/[;:]/).map((code) => (code === "" ? 0 : Number(code)));
  const next = { ...style };
  for (let i = 0; i < codes.length; i += 1) {
    const code = codes[i];
    if (code === 0) for (const key of Object.keys(next)) delete next[key];
    else if (code === 1) next.bold = true;
    else if (code === 2) next.dim = true;
    else if (code === 3) next.italic = true;
    else if (code === 4) next.underline = true;
    else if (code === 22) next.bold = next.dim = false;
    else if (code === 23) next.italic = false;
    else if (code === 24) next.underline = false;
    else if (code >= 30 && code <= 37) next.fg = code - 30;
    else if (code >= 90 && code <= 97) next.fg = code - 90 + 8;
    else if (code === 39) delete next.fg;
    else if (code >= 40 && code <= 47) next.bg = code - 40;
    else if (code >= 100 && code <= 107) next.bg = code - 100 + 8;
    else if (code === 49) delete next.bg;
    else if (code === 38 || code === 48) {
      const key = code === 38 ? "fg" : "bg";
      if (codes[i + 1] === 5 && codes[i + 2] != null) {
        next[key] = color256(codes[i + 2] & 255);
        i += 2;
      } else if (codes[i + 1] === 2 && codes[i + 4] != null) {
        next[key] = `rgb(${codes.slice(i + 2, i + 5).map((c) => c & 255).join(", ")})`;
        i += 4;
      }
    }
  }
  return Object.values(next).some((value) => value !== false && value != null) ? next : PLAIN;
}

/** A line's text without escapes (what search reads) and its runs: [{text, style}], or null
 * when the line had no control character at all (most lines: one text node). */
export function parseLine(line) {
  if (!HAS_CONTROL.test(line)) return { text: line, runs: null };
  let runs = [];
  let style = PLAIN;
  let overwrite = false;
  const put = (text) => {
    if (!text) return;
    if (overwrite) {
      runs = [];
      overwrite = false;
    }
    const last = runs.at(-1);
    if (last?.style === style) last.text += text;
    else runs.push({ text, style });
  };
  line.split("\r").forEach((part, index) => {
    // After a carriage return, text writes over the line (a trailing one changes nothing).
    if (index > 0) overwrite = true;
    let from = 0;
    for (const match of part.matchAll(CONTROL)) {
      put(part.slice(from, match.index));
      from = match.index + match[0].length;
      if (match[2] === "m") style = sgr(style, match[1]);
    }
    put(part.slice(from));
  });
  return { text: runs.map((run) => run.text).join(""), runs };
}

/** Whether a run is shown red, as tools print their errors. */
export const isRed = (style) => style.fg === 1 || style.fg === 9;

/** The element of a styled run: classes for the palette and attributes, the CSSOM for other
 * colours (the page's policy allows no inline style attribute). */
export function runElement({ text, style }) {
  if (style === PLAIN) return text;
  const span = document.createElement("span");
  const classes = [];
  if (style.bold) classes.push("sgr-bold");
  if (style.dim) classes.push("sgr-dim");
  if (style.italic) classes.push("sgr-italic");
  if (style.underline) classes.push("sgr-underline");
  if (typeof style.fg === "number") classes.push(`fg-${style.fg}`);
  else if (style.fg) span.style.color = style.fg;
  if (typeof style.bg === "number") classes.push(`bg-${style.bg}`);
  else if (style.bg) span.style.backgroundColor = style.bg;
  span.className = classes.join(" ");
  span.textContent = text;
  return span;
}
