// DOM helpers. Data only ever reaches the page as text nodes and attribute values: nothing
// here (or anywhere in the dashboard) parses a string as HTML.

export const STATUSES = ["pending", "building", "success", "failed", "cancelled"];
export const TERMINAL = ["success", "failed", "cancelled"];

/** h("a", {href: "#/x", onclick: f}, "text", child, …): an element; strings become text. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return el;
}

export function badge(status) {
  const known = [...STATUSES, "created"].includes(status) ? status : "unknown";
  return h("span", { class: `badge badge-${known}` }, status ?? "unknown");
}

const UNITS = [
  [86400, "d"],
  [3600, "h"],
  [60, "min"],
  [1, "s"],
];

/** 75 → "1 min 15 s", 3 → "3 s": the two largest units. */
export function seconds(total) {
  total = Math.max(0, Math.round(total));
  const parts = [];
  for (const [size, unit] of UNITS) {
    if (total >= size || (unit === "s" && parts.length === 0)) {
      parts.push(`${Math.floor(total / size)} ${unit}`);
      total %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

const since = (iso) => (Date.now() - Date.parse(iso)) / 1000;

export function duration(build) {
  if (!build.started_at) return build.status === "pending" ? "queued" : "–";
  const end = build.finished_at ? Date.parse(build.finished_at) : Date.now();
  return seconds((end - Date.parse(build.started_at)) / 1000);
}

/** A <time> showing "5 min ago", kept current by tick(). */
export function ago(iso, prefix = "") {
  if (!iso) return h("span", {}, "–");
  const title = new Date(iso).toLocaleString();
  return h("time", { datetime: iso, title, "data-ago": prefix }, agoText(iso, prefix));
}

const agoText = (iso, prefix) => `${prefix}${seconds(since(iso))} ago`;

/** A running build's duration, kept current by tick(). */
export function runningDuration(build) {
  const live = build.started_at && !build.finished_at;
  return h("span", { "data-running": live ? build.started_at : null }, duration(build));
}

export function tick() {
  for (const el of document.querySelectorAll("time[data-ago]")) {
    el.textContent = agoText(el.getAttribute("datetime"), el.dataset.ago);
  }
  for (const el of document.querySelectorAll("[data-running]")) {
    el.textContent = seconds(since(el.dataset.running));
  }
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Plain http on another host has no Clipboard API: fall back to a selected textarea.
    const area = h("textarea", { readonly: true, class: "offscreen", "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {}
    area.remove();
    return ok;
  }
}

export function copyButton(text, what) {
  const button = h("button", { type: "button", class: "small", "aria-label": `Copy ${what}` }, "Copy");
  button.addEventListener("click", async () => {
    const ok = await copyText(text);
    button.focus();
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  return button;
}

/** Brings tbody's rows in line with items, keyed by id: unchanged rows stay in place, so a
 * refresh neither flickers nor takes the keyboard focus away. */
export function syncRows(tbody, items, render) {
  const old = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  items.forEach(({ key, sig, value }, index) => {
    let row = old.get(key);
    if (!row || row.dataset.sig !== sig) {
      const fresh = render(value);
      fresh.dataset.key = key;
      fresh.dataset.sig = sig;
      const focused = row?.contains(document.activeElement) && document.activeElement.dataset.focus;
      if (row) row.replaceWith(fresh);
      if (focused) fresh.querySelector(`[data-focus="${focused}"]`)?.focus();
      row = fresh;
    }
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] ?? null);
  });
  while (tbody.rows.length > items.length) tbody.rows[items.length].remove();
}

/** Shows an error in a view's message area (an aborted request is no error). */
export function report(target, error) {
  if (error?.name === "AbortError") return;
  target.textContent = error?.status !== undefined ? error.message : `Unexpected error: ${error}`;
}

/** Calls fn now and every ms milliseconds until signal aborts (skipped while the tab is hidden). */
export function every(ms, signal, fn) {
  let timer;
  const run = async () => {
    if (signal.aborted) return;
    if (!document.hidden) await fn().catch(() => {});
    if (!signal.aborted) timer = setTimeout(run, ms);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  return run();
}
