// #/deployments: the list (refreshed every 5 s) and the form that creates a deployment and,
// for an archive one, uploads its source with a progress bar and deploys it.

import { json, page, upload } from "./api.js";
import { ago, badge, every, h, report, syncRows, TERMINAL } from "./dom.js";

const finished = new Map(); // build id → a finished build, whose record no longer changes

async function latestBuild(deployment, signal) {
  const id = deployment.latest_build_id;
  if (!id) return null;
  if (finished.has(id)) return finished.get(id);
  const build = await json(`/deployments/${deployment.id}/builds/${id}`, { signal }).catch(() => null);
  if (build && TERMINAL.includes(build.status)) finished.set(id, build);
  return build;
}

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) [n, i] = [n / 1024, i + 1];
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function source(d) {
  if (d.source_type === "git") return `git · ${d.repo_url} (${d.branch})`;
  if (!d.archive) return "archive · nothing uploaded yet";
  return `archive · ${d.archive.sha256.slice(0, 8)} · ${bytes(d.archive.size)}`;
}

/** The cursor of a page from the route's query (?cursor=N), or null. */
export const cursorOf = (query) => (/^\d+$/.test(query.get("cursor") ?? "") ? query.get("cursor") : null);

/** "Newest" and "Older" links for cursor paging, rebuilt only when they change (focus stays). */
export function updatePager(pager, base, cursor, next) {
  const sig = `${cursor}/${next}`;
  if (pager.dataset.sig === sig) return;
  pager.dataset.sig = sig;
  pager.replaceChildren(
    cursor ? h("a", { href: base }, "← Newest") : "",
    next ? h("a", { href: `${base}?cursor=${next}` }, "Older →") : "",
  );
}

function lastBuild(d, build) {
  if (!build) return "none yet";
  const [label, at] = build.finished_at
    ? ["finished ", build.finished_at]
    : build.started_at
      ? ["started ", build.started_at]
      : ["queued ", build.created_at];
  const href = `#/deployments/${d.id}/builds/${build.id}`;
  return [h("a", { href, "data-focus": "build" }, `#${build.number}`), " ", ago(at, label)];
}

function row({ d, build }) {
  return h(
    "tr",
    {},
    h("td", { "data-label": "Name" }, h("a", { href: `#/deployments/${d.id}`, "data-focus": "name" }, d.name)),
    h("td", { "data-label": "Subdomain" }, d.subdomain),
    h("td", { "data-label": "Source", class: "wrap" }, source(d)),
    h("td", { "data-label": "Status" }, badge(d.status)),
    h("td", { "data-label": "Last build" }, lastBuild(d, build)),
  );
}

export function table(headers, tbody) {
  const head = h("tr", {}, headers.map((title) => h("th", { scope: "col" }, title)));
  return h("table", {}, h("thead", {}, head), tbody);
}

export function deploymentsView(root, { query, signal }) {
  const cursor = cursorOf(query);
  const message = h("p", { class: "message error", role: "alert" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No deployments yet: create one below.");
  const pager = h("nav", { class: "pager", "aria-label": "Deployment pages" });
  document.title = "Deployments · Build farm";
  root.append(
    h("h1", { tabindex: "-1" }, "Deployments"),
    message,
    h(
      "section",
      { class: "card", "aria-label": "Deployments" },
      table(["Name", "Subdomain", "Source", "Status", "Last build"], tbody),
      empty,
      pager,
    ),
    createForm(),
  );
  every(5000, signal, async () => {
    try {
      const { items, next } = await page(`/deployments${cursor ? `?cursor=${cursor}` : ""}`, { signal });
      const builds = await Promise.all(items.map((d) => latestBuild(d, signal)));
      const rows = items.map((d, i) => ({ key: d.id, sig: JSON.stringify([d, builds[i]]), value: { d, build: builds[i] } }));
      syncRows(tbody, rows, row);
      empty.hidden = items.length > 0;
      updatePager(pager, "#/deployments", cursor, next);
      message.textContent = "";
    } catch (error) {
      report(message, error);
    }
  });
}

/** Uploads a file with a <progress> showing how far it got; resolves with the API's answer. */
export async function uploadArchive(deploymentId, file, progress, message) {
  progress.value = 0;
  progress.hidden = false;
  message.textContent = `Uploading ${file.name}…`;
  const result = await upload(deploymentId, file, (done) => (progress.value = Math.round(done * 100)));
  progress.value = 100;
  message.textContent = `Uploaded ${file.name} (${bytes(result.size)}).`;
  return result;
}

function field(label, input, hint) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: input.id }, label),
    input,
    hint ? h("p", { class: "hint", id: `${input.id}-hint` }, hint) : "",
  );
}

function createForm() {
  const input = (id, attrs = {}) => h("input", { id, name: id, autocomplete: "off", ...attrs });
  const name = input("name", { required: true, maxlength: "100" });
  const subdomain = input("subdomain", {
    required: true,
    maxlength: "63",
    pattern: "[a-z0-9]([a-z0-9\\-]{0,61}[a-z0-9])?",
    "aria-describedby": "subdomain-hint",
  });
  const repo = input("repo_url", { type: "url", required: true, placeholder: "https://git.example.com/app.git" });
  const branch = input("branch", { placeholder: "main" });
  const dockerfile = input("dockerfile_path", { placeholder: "Dockerfile" });
  const archive = input("archive", { type: "file", accept: ".tar.gz,.tgz,application/gzip" });
  const deployAfter = input("deploy_after", { type: "checkbox", checked: true });
  const radio = (value, checked) =>
    h("label", { class: "choice" }, h("input", { type: "radio", name: "source_type", value, checked }), value);
  const gitRadio = radio("git", true);
  const gitFields = h("div", {}, field("Git repository URL", repo), field("Branch", branch));
  const archiveFields = h(
    "div",
    { hidden: true },
    field("Source archive (.tar.gz), optional now", archive, "It can be uploaded later from the deployment's page."),
    h("div", { class: "choice" }, deployAfter, h("label", { for: "deploy_after" }, "Deploy once uploaded")),
  );
  const progress = h("progress", { max: "100", value: "0", hidden: true, "aria-label": "Upload progress" });
  const message = h("p", { class: "message", role: "status" });
  const submit = h("button", { type: "submit" }, "Create deployment");
  const form = h(
    "form",
    { class: "card form", "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "New deployment"),
    h("fieldset", { class: "choices" }, h("legend", {}, "Source"), gitRadio, radio("archive", false)),
    field("Name", name),
    field("Subdomain", subdomain, "Lower-case letters, digits and hyphens; it names the image."),
    gitFields,
    archiveFields,
    field("Dockerfile path", dockerfile),
    submit,
    progress,
    message,
  );
  const isGit = () => gitRadio.querySelector("input").checked;
  form.addEventListener("change", () => {
    gitFields.hidden = !isGit();
    archiveFields.hidden = isGit();
    repo.required = isGit();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim(), subdomain: subdomain.value.trim(), source_type: isGit() ? "git" : "archive" };
    if (isGit()) body.repo_url = repo.value.trim();
    if (isGit() && branch.value.trim()) body.branch = branch.value.trim();
    if (dockerfile.value.trim()) body.dockerfile_path = dockerfile.value.trim();
    submit.disabled = true;
    message.className = "message";
    message.textContent = "Creating…";
    let created;
    try {
      created = await json("/deployments", { method: "POST", body });
      const file = archive.files[0];
      if (!isGit() && file) {
        await uploadArchive(created.id, file, progress, message);
        if (deployAfter.checked) {
          message.textContent = "Uploaded: starting a build…";
          const build = await json(`/deployments/${created.id}/deploy`, { method: "POST" });
          location.hash = `#/deployments/${created.id}/builds/${build.id}`;
          return;
        }
      }
      location.hash = `#/deployments/${created.id}`;
    } catch (error) {
      message.className = "message error";
      report(message, error);
      if (created) {
        message.append(" The deployment was created: ", h("a", { href: `#/deployments/${created.id}` }, "open it"), " to try again.");
      }
      submit.disabled = false;
    }
  });
  return form;
}
