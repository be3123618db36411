// #/deployments/{id}: the deployment, its deploy (and upload) actions, and its builds, newest
// first, refreshed every 3 s without reloading; then its integrations (integrations.js).

import { json, page } from "./api.js";
import { cursorOf, source, table, updatePager, uploadArchive } from "./deployments.js";
import { ago, badge, copyButton, every, h, report, runningDuration, syncRows } from "./dom.js";
import { historyChart } from "./history.js";
import { integrationsCard } from "./integrations.js";

// The chart shows this many of the latest builds, whatever page of the table is open.
const CHART_BUILDS = 50;

function buildRow(b) {
  const href = `#/deployments/${b.deployment_id}/builds/${b.id}`;
  const commit = b.commit_sha ? h("code", { title: b.commit_sha }, b.commit_sha.slice(0, 8)) : "–";
  const image = b.image_tag
    ? h("span", { class: "tag" }, h("code", {}, b.image_tag), copyButton(b.image_tag, `the image tag of build ${b.number}`))
    : "–";
  return h(
    "tr",
    {},
    h("td", { "data-label": "Build" }, h("a", { href, "data-focus": "link" }, `#${b.number}`)),
    h("td", { "data-label": "Status" }, badge(b.status)),
    h("td", { "data-label": "Commit" }, commit),
    h("td", { "data-label": "Image", class: "wrap" }, image),
    h("td", { "data-label": "Queued" }, ago(b.created_at)),
    h("td", { "data-label": "Duration" }, runningDuration(b)),
  );
}

/** <dl> groups for [term, value] pairs, leaving out the empty ones. */
export function facts(pairs) {
  return pairs
    .filter(([, value]) => value != null && value !== "")
    .map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value)));
}

/** A build's or a deployment's build args as NAME=value lines, or null when there are none. */
export function buildArgs(args) {
  const pairs = Object.entries(args ?? {});
  if (pairs.length === 0) return null;
  return h("ul", { class: "args" }, pairs.map(([name, value]) => h("li", {}, h("code", {}, `${name}=${value}`))));
}

function actions(d) {
  const message = h("p", { class: "message", role: "status" });
  const deploy = h("button", { type: "button" }, d.source_type === "git" ? `Deploy the tip of ${d.branch}` : "Deploy the last upload");
  deploy.addEventListener("click", async () => {
    deploy.disabled = true;
    message.className = "message";
    message.textContent = "Starting a build…";
    try {
      const build = await json(`/deployments/${d.id}/deploy`, { method: "POST" });
      location.hash = `#/deployments/${d.id}/builds/${build.id}`;
    } catch (error) {
      message.className = "message error";
      report(message, error);
      deploy.disabled = false;
    }
  });
  if (d.source_type === "git") return h("section", { class: "card toolbar", "aria-label": "Deploy" }, deploy, message);

  const file = h("input", { id: "archive", type: "file", accept: ".tar.gz,.tgz,application/gzip" });
  const send = h("button", { type: "submit" }, "Upload");
  const progress = h("progress", { max: "100", value: "0", hidden: true, "aria-label": "Upload progress" });
  const form = h(
    "form",
    { class: "card toolbar", "aria-label": "Upload and deploy" },
    h("label", { for: "archive" }, "Source archive (.tar.gz)"),
    file,
    send,
    deploy,
    progress,
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files[0]) {
      message.textContent = "Choose a .tar.gz file first.";
      return;
    }
    send.disabled = true;
    message.className = "message";
    try {
      await uploadArchive(d.id, file.files[0], progress, message);
    } catch (error) {
      message.className = "message error";
      report(message, error);
    }
    send.disabled = false;
  });
  return form;
}

export function buildsView(root, { ids: [deploymentId], query, signal }) {
  const cursor = cursorOf(query);
  const base = `#/deployments/${deploymentId}`;
  const heading = h("h1", { tabindex: "-1" }, "Deployment");
  const status = h("span");
  const message = h("p", { class: "message error", role: "alert" });
  const details = h("dl", { class: "facts" });
  const slot = h("div");
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No builds yet.");
  const pager = h("nav", { class: "pager", "aria-label": "Build pages" });
  const chart = h("div");
  let charted = null;
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/deployments" }, "← Deployments")),
    h("div", { class: "title" }, heading, status),
    message,
    details,
    slot,
    h(
      "section",
      { class: "card", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, `Last ${CHART_BUILDS} builds`),
      chart,
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "builds-title" },
      h("h2", { id: "builds-title" }, "Builds"),
      table(["Build", "Status", "Commit", "Image", "Queued", "Duration"], tbody),
      empty,
      pager,
    ),
    integrationsCard(deploymentId, signal),
  );
  let shown = null;
  every(3000, signal, async () => {
    try {
      const query = cursor ? `?cursor=${cursor}` : "";
      const [d, { items, next }, latest] = await Promise.all([
        json(`/deployments/${deploymentId}`, { signal }),
        page(`/deployments/${deploymentId}/builds${query}`, { signal }),
        json(`/deployments/${deploymentId}/builds?limit=${CHART_BUILDS}`, { signal }),
      ]);
      // Redrawn when a build changes, and while one runs (its bar grows).
      const drawn = JSON.stringify(latest);
      if (drawn !== charted || latest.some((b) => b.started_at && !b.finished_at)) {
        charted = drawn;
        const focused = chart.contains(document.activeElement) && document.activeElement.getAttribute("href");
        chart.replaceChildren(historyChart(latest));
        if (focused) chart.querySelector(`a[href="${focused}"]`)?.focus();
      }
      if (JSON.stringify(d) !== shown) {
        shown = JSON.stringify(d);
        heading.textContent = d.name;
        document.title = `${d.name} · Build farm`;
        status.replaceChildren(badge(d.status));
        details.replaceChildren(
          ...facts([
            ["Subdomain", d.subdomain],
            ["Source", source(d)],
            ["Dockerfile", d.dockerfile_path],
            ["Build args", buildArgs(d.build_args)],
          ]),
        );
        if (!slot.firstChild) slot.append(actions(d));
      }
      syncRows(tbody, items.map((b) => ({ key: b.id, sig: JSON.stringify(b), value: b })), buildRow);
      empty.hidden = items.length > 0;
      updatePager(pager, base, cursor, next);
      message.textContent = "";
    } catch (error) {
      report(message, error);
    }
  });
}
