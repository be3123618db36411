// The deployment page's integrations (docs/INTEGRATIONS.md): where its builds report their
// commit status, and its notification targets with their last delivery. Read-only, refreshed
// every 5 s, shown only when the deployment has any. Every value reaches the page as text.

import { ApiError, json } from "./api.js";
import { table } from "./deployments.js";
import { ago, every, h, syncRows } from "./dom.js";

const PROVIDERS = { github: "GitHub", gitlab: "GitLab" };

function lastDelivery(last) {
  if (!last) return "none yet";
  const outcome = last.delivered
    ? `delivered (${last.status_code})`
    : last.status_code !== null
      ? `answered ${last.status_code}`
      : "no answer";
  return h(
    "span",
    { class: "delivery", title: last.answer },
    h("span", { class: `badge badge-${last.delivered ? "success" : "failed"}` }, outcome),
    ` ${last.event}, attempt ${last.attempt}, `,
    ago(last.at),
  );
}

function targetRow({ target, last }) {
  return h(
    "tr",
    {},
    h("td", { "data-label": "URL", class: "wrap" }, h("code", {}, target.url)),
    h("td", { "data-label": "Events" }, target.events.join(", ")),
    h("td", { "data-label": "Format" }, target.format),
    h("td", { "data-label": "Last delivery" }, lastDelivery(last)),
  );
}

async function commitStatus(path, signal) {
  try {
    return await json(`${path}/commit-status`, { signal });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export function integrationsCard(deploymentId, signal) {
  const path = `/deployments/${deploymentId}`;
  const reporting = h("p", { class: "reporting" });
  const tbody = h("tbody");
  const targets = h("div", {}, h("h3", {}, "Notifications"), table(["URL", "Events", "Format", "Last delivery"], tbody));
  const card = h(
    "section",
    { class: "card integrations", "aria-labelledby": "integrations-title", hidden: true },
    h("h2", { id: "integrations-title" }, "Integrations"),
    reporting,
    targets,
  );
  every(5000, signal, async () => {
    const [status, list] = await Promise.all([commitStatus(path, signal), json(`${path}/notifications`, { signal })]);
    const lasts = await Promise.all(
      list.map((t) => json(`${path}/notifications/${t.id}/deliveries`, { signal }).then((d) => d[0] ?? null)),
    );
    reporting.textContent = status
      ? `Commit status: reported to ${PROVIDERS[status.provider]} · ${status.repository} (${status.api_url})`
      : "Commit status: not reported";
    const rows = list.map((target, i) => ({ target, last: lasts[i] }));
    syncRows(tbody, rows.map((row) => ({ key: row.target.id, sig: JSON.stringify(row), value: row })), targetRow);
    targets.hidden = list.length === 0;
    card.hidden = !status && list.length === 0;
  });
  return card;
}
