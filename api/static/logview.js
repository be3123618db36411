// A build's log shown as a terminal would show it, for the build page: coloured (terminal.js),
// every line numbered with a link to it, the Dockerfile's steps folding with their time and
// whether they were cached (steps.js), a search that highlights its matches and steps through
// them, and a jump to the first error. Lines reach the page as text nodes only.
//
// Rendering in chunks: lines are parsed and turned into elements in slices of SLICE_MS per frame,
// so a 100,000-line log paints its first screen at once and the tab answers meanwhile; the
// elements sit in blocks of BLOCK_LINES lines which the browser neither lays out nor paints while
// they are off screen (content-visibility: auto; without it the same log took ten times as long,
// in tasks of 2 s). Search reads the lines' text, not the page, and marks its matches with the
// CSS Custom Highlight API, which changes no element.

import { h } from "./dom.js";
import { stepLine } from "./steps.js";
import { isRed, parseLine, runElement } from "./terminal.js";

const BLOCK_LINES = 500;
const SLICE_MS = 8;
// More highlighted matches than this would cost more than they show.
const MAX_HIGHLIGHTS = 10_000;
// What tools print when something went wrong (besides printing it in red).
const ERROR = /\b(?:error|failed|fatal)\b|^E: |returned a non-zero code/i;

/** Step state in words, after the step's first line: "cached", "ran in 2.1 s", "failed". */
function summary(state) {
  const time = state.seconds == null ? "" : ` in ${state.seconds} s`;
  if (state.failed) return `failed${time}`;
  if (state.cached) return "cached";
  return state.ran || time ? `ran${time}` : "";
}

/** The view: `log` (the <pre>) and `tools` (search, jumps) to place; `add(lines)` appends raw
 * lines; `follow(yes)` keeps the end in view as lines come; `goTo(n)` shows line n (once it
 * came); `renderNow()` renders a first slice at once; `idle()` resolves when every line added so
 * far is on the page. `href(n)` is line n's link. */
export function logView({ href }) {
  const log = h("pre", { class: "log", tabindex: "0", "aria-label": "Build log" });
  const search = h("input", {
    type: "search",
    class: "log-search",
    placeholder: "Search the log",
    "aria-label": "Search the log",
    autocomplete: "off",
    spellcheck: "false",
  });
  const count = h("span", { class: "match-count", role: "status" });
  const previous = h("button", { type: "button", class: "small", "aria-label": "Previous match", disabled: true }, "↑");
  const next = h("button", { type: "button", class: "small", "aria-label": "Next match", disabled: true }, "↓");
  const firstError = h("button", { type: "button", class: "small", hidden: true }, "Jump to first error");
  const toEnd = h("button", { type: "button", class: "small", hidden: true }, "Follow the end ↓");
  const tools = h(
    "div",
    { class: "log-tools" },
    h("span", { class: "search" }, search, previous, next, count),
    firstError,
    toEnd,
  );

  const raw = []; // the lines as they came
  const lines = []; // parsed when first needed: {text, runs, lower?}
  const line = (index) => (lines[index] ??= parseLine(raw[index]));
  const elements = [];
  let rendered = 0;
  let errorAt = -1;
  let following = false;
  let target = null; // a line asked for before it came
  let marked = null;
  // the search: its text (lowercase), the lines that hold it, the one shown
  let query = "";
  let matches = [];
  let current = -1;

  // --- rendering, in order: where each line goes depends on the steps before it
  let container = log;
  let block = null;
  let step = null; // the open step: {key}
  const states = new Map(); // step key → {cached, seconds, failed, ran, summaries: [elements]}

  const stateOf = (key) => {
    if (!states.has(key)) states.set(key, { summaries: [] });
    return states.get(key);
  };
  const showState = (key, change) => {
    const state = Object.assign(stateOf(key), change);
    for (const element of state.summaries) {
      element.dataset.summary = summary(state);
      element.parentElement.dataset.state = state.failed ? "failed" : state.cached ? "cached" : "ran";
    }
  };

  function put(element) {
    if (!block || block.childElementCount >= BLOCK_LINES) {
      block = h("div", { class: "block" });
      container.append(block);
    }
    block.append(element);
  }

  // Attributes rather than properties: the href and dataset setters cost 5 times as much, and
  // this runs once a line. Line links are out of the tab order (a log has thousands).
  function lineElement(index, head) {
    const { text, runs } = line(index);
    const element = document.createElement("div");
    element.className = "line";
    const link = document.createElement("a");
    link.className = "ln";
    link.setAttribute("href", href(index + 1));
    link.setAttribute("tabindex", "-1");
    link.setAttribute("data-n", index + 1);
    element.append(link);
    if (runs) element.append(...runs.map(runElement), "\n");
    else if (head) element.append(text, "\n"); // a step's summary goes between the two
    else element.append(`${text}\n`);
    return element;
  }

  function openStep(key, head) {
    const body = h("div", { class: "step-body", id: `step-${elements.length}` });
    const fold = h("button", {
      type: "button",
      class: "fold",
      "aria-expanded": "true",
      "aria-controls": body.id,
      "aria-label": `Fold ${key}`,
    });
    const said = h("span", { class: "step-summary" });
    head.classList.add("step-head");
    head.firstChild.after(fold);
    head.lastChild.before(said);
    stateOf(key).summaries.push(said);
    log.append(h("div", { class: "step" }, head, body));
    showState(key, {});
    container = body;
    block = null;
    step = { key };
  }

  function closeStep() {
    container = log;
    block = null;
    step = null;
  }

  function render(index) {
    const { text, runs } = line(index);
    if (errorAt < 0 && (ERROR.test(text) || runs?.some((run) => isRed(run.style)))) {
      errorAt = index;
      firstError.hidden = false;
    }
    const says = stepLine(text);
    const element = lineElement(index, says?.start);
    elements[index] = element;
    if (says?.start) return openStep(says.start, element);
    if (says?.after) closeStep();
    put(element);
    if (says?.end) {
      showState(says.end, { cached: says.cached, seconds: says.seconds, failed: says.failed, ran: !says.cached });
      if (step?.key === says.end) closeStep();
    } else if (says?.state && step) {
      showState(step.key, { cached: says.state === "cached", ran: says.state === "ran" });
    }
    if (query) highlightLine(index);
  }

  function renderThrough(last) {
    while (rendered <= last && rendered < raw.length) render(rendered++);
  }

  let scheduled = false;
  const waiting = [];
  function slice() {
    scheduled = false;
    const start = performance.now();
    while (rendered < raw.length && performance.now() - start < SLICE_MS) renderThrough(rendered + 99);
    if (following) log.scrollTop = log.scrollHeight;
    if (rendered < raw.length) schedule();
    else for (const resolve of waiting.splice(0)) resolve();
  }
  function schedule() {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(slice);
    }
  }

  // --- reading the lines
  function add(more) {
    const from = raw.length;
    for (const text of more) raw.push(text);
    if (query) {
      for (let index = from; index < raw.length; index += 1) if (matchesQuery(index)) matches.push(index);
      showCount();
    }
    if (target != null && target < raw.length) {
      renderThrough(target);
      reveal(target);
      target = null;
    }
    schedule();
  }

  /** Shows line index (0-based): renders it, unfolds its step, scrolls it into the middle of
   * the log and marks it. */
  function reveal(index) {
    renderThrough(index);
    const element = elements[index];
    const section = element.closest(".step");
    if (section?.classList.contains("folded")) setFolded(section, false);
    following = false;
    marked?.classList.remove("target");
    marked = element;
    element.classList.add("target");
    element.scrollIntoView({ block: "center" });
  }

  function setFolded(section, folded) {
    section.classList.toggle("folded", folded);
    section.querySelector(".step-body").hidden = folded;
    section.querySelector(".fold").setAttribute("aria-expanded", String(!folded));
  }

  log.addEventListener("click", (event) => {
    const fold = event.target.closest("button.fold");
    if (fold) return setFolded(fold.closest(".step"), fold.getAttribute("aria-expanded") === "true");
    const link = event.target.closest("a.ln");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    // The line's address without a new route: the view stays, its log is not read again.
    event.preventDefault();
    history.replaceState(history.state, "", link.href);
    reveal(Number(link.dataset.n) - 1);
  });

  // --- following the end while lines come, unless the reader scrolled up
  log.addEventListener("scroll", () => {
    following = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    toEnd.hidden = following;
  });
  toEnd.addEventListener("click", () => {
    following = true;
    log.scrollTop = log.scrollHeight;
    log.focus();
  });
  firstError.addEventListener("click", () => reveal(errorAt));

  // --- search
  const highlights = globalThis.CSS?.highlights;
  const all = highlights ? new Highlight() : null;
  const selected = highlights ? new Highlight() : null;
  if (highlights) {
    highlights.set("log-match", all);
    highlights.set("log-current", selected);
  }

  function matchesQuery(index) {
    const parsed = line(index);
    parsed.lower ??= parsed.text.toLowerCase();
    return parsed.lower.includes(query);
  }

  /** The ranges of the query's occurrences in a rendered line. */
  function ranges(index) {
    const element = elements[index];
    const text = lines[index].lower;
    if (!element || !text) return [];
    const nodes = [];
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(), start = 0; node; node = walker.nextNode()) {
      nodes.push([node, start]);
      start += node.length;
    }
    const at = (offset, end) => {
      // The node holding the offset; an end falls in the node before a boundary.
      let i = nodes.findIndex(([node, start]) => offset < start + node.length + (end ? 1 : 0));
      if (i < 0) i = nodes.length - 1;
      const [node, start] = nodes[i];
      return [node, Math.min(offset - start, node.length)];
    };
    const found = [];
    for (let from = text.indexOf(query); from >= 0; from = text.indexOf(query, from + query.length)) {
      const range = new Range();
      range.setStart(...at(from, false));
      range.setEnd(...at(from + query.length, true));
      found.push(range);
    }
    return found;
  }

  function highlightLine(index) {
    if (!all || all.size >= MAX_HIGHLIGHTS || !matchesQuery(index)) return;
    for (const range of ranges(index)) all.add(range);
  }

  function showCount() {
    count.textContent = query ? (matches.length ? `${current + 1} of ${matches.length}` : "no match") : "";
    previous.disabled = next.disabled = matches.length === 0;
  }

  function select(position) {
    current = (position + matches.length) % matches.length;
    showCount();
    const index = matches[current];
    reveal(index);
    if (selected) {
      selected.clear();
      for (const range of ranges(index)) selected.add(range);
    }
  }

  function find() {
    const last = query;
    query = search.value.toLowerCase();
    const narrowing = last && query.includes(last);
    const candidates = narrowing ? matches : null;
    matches = [];
    current = -1;
    all?.clear();
    selected?.clear();
    if (query && candidates) matches = candidates.filter(matchesQuery);
    else if (query) for (let index = 0; index < raw.length; index += 1) if (matchesQuery(index)) matches.push(index);
    for (const index of matches) if (index < rendered) highlightLine(index);
    if (matches.length) select(0);
    else showCount();
  }

  // Searched as each key comes (a query that extends the last one looks only at its matches).
  search.addEventListener("input", () => find());
  search.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    if (search.value.toLowerCase() !== query) find();
    else if (matches.length) select(current + (event.shiftKey ? -1 : 1));
  });
  previous.addEventListener("click", () => select(current - 1));
  next.addEventListener("click", () => select(current + 1));

  return {
    log,
    tools,
    add,
    follow: (yes) => {
      following = yes;
    },
    goTo: (n) => {
      if (n - 1 < raw.length) reveal(n - 1);
      else target = n - 1;
    },
    /** Renders the first slice now (a short log is then whole) and the rest frame by frame. */
    renderNow: () => slice(),
    idle: () => (rendered === raw.length ? Promise.resolve() : new Promise((resolve) => waiting.push(resolve))),
  };
}
