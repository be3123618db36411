// #/farm: the farm itself (GET /farm), refreshed every 2 s: its hosts and worker processes,
// their build slots, the queue and the pace of builds. A worker that stopped heartbeating is
// grey until its record expires; an admin's token also shows the build in each busy slot.

import { json } from "./api.js";
import { table } from "./deployments.js";
import { facts } from "./builds.js";
import { ago, every, h, report, seconds, syncRows } from "./dom.js";

const REFRESH_MS = 2000;

function state(item) {
  return item.stale ? "stale" : "alive";
}

function hostRow(host) {
  return h(
    "tr",
    { class: host.stale ? "stale" : null },
    h("td", { "data-label": "Host" }, host.host),
    h("td", { "data-label": "Processes" }, `${host.processes} × ${host.threads} threads`),
    h("td", { "data-label": "In use" }, String(host.slots_in_use)),
    h("td", { "data-label": "State" }, state(host)),
  );
}

function runningBuilds(worker) {
  if (!worker.builds?.length) return "–";
  return worker.builds.map((b) =>
    h("a", { href: `#/deployments/${b.deployment_id}/builds/${b.build_id}`, title: b.build_id }, `#${b.number} `),
  );
}

function workerRow(admin) {
  return (w) =>
    h(
      "tr",
      { class: w.stale ? "stale" : null },
      h("td", { "data-label": "Worker" }, h("code", {}, w.id)),
      h("td", { "data-label": "In use" }, `${w.slots_in_use} of ${w.threads}`),
      h("td", { "data-label": "Builder" }, w.builder),
      h("td", { "data-label": "Engine" }, w.engine_version ?? "not answering"),
      h("td", { "data-label": "Heartbeat" }, ago(w.last_heartbeat)),
      h("td", { "data-label": "State" }, state(w)),
      admin ? h("td", { "data-label": "Builds" }, runningBuilds(w)) : null,
    );
}

export function farmView(root, { signal }) {
  const message = h("p", { class: "message error", role: "alert" });
  const summary = h("dl", { class: "facts" });
  const hosts = h("tbody");
  const workers = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No worker is heartbeating: is any worker running?");
  const workersCard = h("section", { class: "card", "aria-labelledby": "workers-title" });
  document.title = "Farm · Build farm";
  root.append(
    h("div", { class: "title" }, h("h1", { tabindex: "-1" }, "Farm")),
    message,
    summary,
    h(
      "section",
      { class: "card", "aria-labelledby": "hosts-title" },
      h("h2", { id: "hosts-title" }, "Hosts"),
      table(["Host", "Processes", "In use", "State"], hosts),
    ),
    workersCard,
  );
  let view = null;
  every(REFRESH_MS, signal, async () => {
    try {
      const farm = await json("/farm", { signal });
      const admin = farm.view === "admin";
      if (view !== farm.view) {
        view = farm.view;
        const headers = ["Worker", "In use", "Builder", "Engine", "Heartbeat", "State"];
        workers.replaceChildren();
        workersCard.replaceChildren(
          h("h2", { id: "workers-title" }, "Worker processes"),
          table(admin ? [...headers, "Builds"] : headers, workers),
          empty,
        );
      }
      const { queue } = farm;
      summary.replaceChildren(
        ...facts([
          ["Slots", `${farm.slots_in_use} in use of ${farm.slots}`],
          ["Queue", `${queue.depth} waiting, ${queue.running} running`],
          ["Oldest wait", queue.oldest_wait_s == null ? "none waiting" : seconds(queue.oldest_wait_s)],
          ["Last hour", `${farm.builds_last_hour} builds (${farm.builds_per_minute} per minute)`],
        ]),
      );
      const keyed = (items, key) => items.map((value) => ({ key: key(value), sig: JSON.stringify(value), value }));
      syncRows(hosts, keyed(farm.hosts, (x) => x.host), hostRow);
      syncRows(workers, keyed(farm.workers, (x) => x.id), workerRow(admin));
      empty.hidden = farm.workers.length > 0;
      message.textContent = "";
    } catch (error) {
      report(message, error);
    }
  });
}
