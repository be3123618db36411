// The deployment's history at a glance: its last builds as an inline SVG bar chart drawn here
// (no library), oldest on the left; a bar's height is the build's duration, its colour the
// outcome, and each bar is a link to its build.

import { h, seconds } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 120;
const GAP = 2;
const MIN_BAR = 3;

function svg(tag, attributes, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) el.setAttribute(name, value);
  el.append(...children);
  return el;
}

/** Seconds from start to end (or to now while it runs); 0 before it started. */
function runSeconds(build) {
  if (!build.started_at) return 0;
  const end = build.finished_at ? Date.parse(build.finished_at) : Date.now();
  return Math.max(0, (end - Date.parse(build.started_at)) / 1000);
}

/** The chart of `builds` (newest first, as the API lists them), or a note when there are none. */
export function historyChart(builds) {
  if (builds.length === 0) return h("p", { class: "empty" }, "No builds yet.");
  const oldestFirst = [...builds].reverse();
  const longest = Math.max(1, ...oldestFirst.map(runSeconds));
  const slot = WIDTH / Math.max(oldestFirst.length, 10);
  const bars = oldestFirst.map((b, i) => {
    const took = runSeconds(b);
    const height = Math.max(MIN_BAR, (took / longest) * (HEIGHT - MIN_BAR));
    const label = `Build #${b.number}: ${b.status}, ${b.started_at ? seconds(took) : "not started"}`;
    return svg(
      "a",
      { href: `#/deployments/${b.deployment_id}/builds/${b.id}`, "aria-label": label, class: "bar" },
      svg("title", {}, label),
      svg("rect", {
        class: `bar-${b.status}`,
        x: (i * slot + GAP / 2).toFixed(1),
        y: (HEIGHT - height).toFixed(1),
        width: (slot - GAP).toFixed(1),
        height: height.toFixed(1),
      }),
    );
  });
  const chart = svg(
    "svg",
    {
      class: "history",
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      preserveAspectRatio: "none",
      role: "group",
      "aria-label": `Durations and outcomes of the last ${builds.length} builds, oldest first`,
    },
    ...bars,
  );
  const caption = `Oldest on the left. Height: time from start to end (the longest took ${seconds(longest)}); colour: outcome.`;
  return h("figure", { class: "chart" }, chart, h("figcaption", { class: "hint" }, caption));
}
