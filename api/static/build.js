// #/deployments/{id}/builds/{id}: a build and its log — live over the WebSocket while it
// runs (resuming with ?after=N after a dropped connection), the stored log once it ended.

import { api, hasOperation, json, logSocket } from "./api.js";
import { buildArgs, facts } from "./builds.js";
import { ago, badge, copyButton, h, report, runningDuration, seconds, TERMINAL } from "./dom.js";
import { logView } from "./logview.js";

const RETRY_PATH = "/api/v1/deployments/{deployment_id}/builds/{build_id}/retry";
const PHASES = [
  ["queued_s", "queued"],
  ["source_s", "source"],
  ["build_s", "build"],
  ["push_s", "push"],
];

/** 0.4 → "0.4 s", 75.2 → "1 min 15 s": tenths only while they matter. */
const phaseSeconds = (s) => (s < 60 ? `${s.toFixed(1)} s` : seconds(s));

const count = (n, thing) => `${n} ${thing}${n === 1 ? "" : "s"}`;

/** "7 steps, 5 cached", or the one of the two counts there is. */
function stepCount({ steps, cached_steps: cached }) {
  if (steps == null) return cached == null ? null : count(cached, "cached step");
  return cached == null ? count(steps, "step") : `${count(steps, "step")}, ${cached} cached`;
}

/** Where the build's time went, "queued 0.4 s · source 0.2 s · … · 7 steps, 5 cached", over a
 * bar of the phases' shares; null until the worker measured something. The worker fills the
 * timings as the build goes, so whatever part is there is shown. */
function phases(timings) {
  const measured = PHASES.filter(([key]) => timings?.[key] != null);
  const steps = timings ? stepCount(timings) : null;
  if (measured.length === 0 && steps == null) return null;
  const parts = measured.map(([key, name]) => h("span", { class: `phase phase-${name}` }, `${name} ${phaseSeconds(timings[key])}`));
  if (steps != null) parts.push(h("span", { class: "steps" }, steps));
  const segments = measured.map(([key, name]) => {
    const segment = h("span", { class: `phase-${name}` });
    // Through the CSSOM, which the page's policy (no inline styles) allows.
    segment.style.flexGrow = timings[key];
    return segment;
  });
  return h(
    "span",
    { class: "phases" },
    h("span", {}, parts.flatMap((part, i) => (i ? [" · ", part] : [part]))),
    segments.length ? h("span", { class: "phase-bar", "aria-hidden": "true" }, segments) : null,
  );
}

/** Whose a failure is (the build's error_kind), in words. */
const ERROR_KINDS = {
  user: "the build's own: its Dockerfile, a step, its source or an image it names",
  infrastructure: "the farm's: one of its parts (S3, the registry, the Docker engine, Redis, a worker) failed",
  timeout: "a deadline passed",
  cancelled: "cancelled by a user, or superseded by a newer deploy",
};

const errorKind = (kind) => h("span", { class: `error-kind error-kind-${kind}` }, h("strong", {}, kind), ` — ${ERROR_KINDS[kind] ?? ""}`);

export function buildView(root, { ids: [deploymentId, buildId], signal }) {
  const path = `/deployments/${deploymentId}/builds/${buildId}`;
  const heading = h("h1", { tabindex: "-1" }, "Build");
  const status = h("span", { role: "status" });
  const message = h("p", { class: "message error", role: "alert" });
  const details = h("dl", { class: "facts" });
  const times = h("dl", { class: "facts inline" });
  const cancel = h("button", { type: "button", class: "danger", hidden: true }, "Cancel build");
  const retry = h("button", { type: "button", hidden: true }, "Retry");
  const download = h("button", { type: "button" }, "Download raw log");
  const downloadPlain = h("button", { type: "button" }, "Download as plain text");
  const logState = h("span", { class: "log-state" });
  // Line n's address: the build's route and #Ln (app.js routes it here).
  const view = logView({ href: (n) => `#${path}#L${n}` });
  const asked = /#L(\d+)$/.exec(location.hash);
  if (asked) view.goTo(Number(asked[1]));
  const back = h("a", { href: `#/deployments/${deploymentId}` }, "← Builds");
  root.append(
    h("p", { class: "crumbs" }, back),
    h("div", { class: "title" }, heading, status),
    message,
    h("div", { class: "toolbar" }, cancel, retry, download, downloadPlain),
    details,
    times,
    h("section", { class: "card", "aria-label": "Log" }, h("div", { class: "log-head" }, h("h2", {}, "Log"), logState, view.tools), view.log),
  );

  let build = null;
  let shown = null;
  let canRetry = false;
  hasOperation(RETRY_PATH, "post").then((yes) => {
    canRetry = yes;
    if (build) show(build);
  });
  json(`/deployments/${deploymentId}`, { signal })
    .then((d) => {
      back.textContent = `← ${d.name}: builds`;
      document.title = `${heading.textContent} of ${d.name} · Build farm`;
      back.dataset.name = d.name;
    })
    .catch(() => {});

  function show(b) {
    build = b;
    const finished = TERMINAL.includes(b.status);
    cancel.hidden = finished;
    download.hidden = downloadPlain.hidden = b.status === "pending";
    retry.hidden = !(canRetry && finished);
    if (JSON.stringify(b) === shown) return;
    shown = JSON.stringify(b);
    heading.textContent = `Build #${b.number}`;
    document.title = `${heading.textContent} of ${back.dataset.name ?? "a deployment"} · Build farm`;
    status.replaceChildren(badge(b.status));
    const image = b.image_tag ? h("span", { class: "tag" }, h("code", {}, b.image_tag), copyButton(b.image_tag, "the image tag")) : null;
    details.replaceChildren(
      ...facts([
        ["Commit", b.commit_sha ? h("code", { class: "wrap" }, b.commit_sha) : null],
        ["Image", image],
        ["Digest", b.image_digest ? h("code", { class: "wrap" }, b.image_digest) : null],
        ["Build args", buildArgs(b.build_args)],
        ["Cache", b.no_cache ? "not used (no_cache): every step runs again" : null],
        ["Phases", phases(b.timings)],
        ["Error", b.error ? h("span", { class: "error-text" }, b.error) : null],
        ["Error kind", b.error_kind ? errorKind(b.error_kind) : null],
      ]),
    );
    times.replaceChildren(
      ...facts([
        ["Queued", ago(b.created_at)],
        ["Started", b.started_at ? ago(b.started_at) : null],
        ["Finished", b.finished_at ? ago(b.finished_at) : null],
        ["Duration", runningDuration(b)],
        ["Attempt", b.attempt ? `${b.attempt} on ${b.worker ?? "?"}` : null],
      ]),
    );
  }

  const refresh = async () => {
    const b = await json(path, { signal });
    show(b);
    return b;
  };

  // The build record, every 2 s until it ended.
  let poller;
  const poll = async () => {
    try {
      if (TERMINAL.includes((await refresh()).status)) return;
    } catch (error) {
      report(message, error);
      if (error.status === 404 || error.name === "AbortError") return;
    }
    poller = setTimeout(poll, 2000);
  };
  signal.addEventListener("abort", () => clearTimeout(poller));

  // --- the log (logview.js): live lines as they come, following the end unless a line was
  // asked for or the reader scrolled up; or the stored log at once.
  let received = 0;
  const ended = () =>
    view.idle().then(() => {
      logState.textContent = "The build ended: this is its whole log";
    });

  let socket = null;
  let delay = 1000;
  signal.addEventListener("abort", () => socket?.close(1000));
  function connect() {
    if (signal.aborted) return;
    if (!asked && received === 0) view.follow(true);
    try {
      socket = logSocket(path, received);
    } catch (error) {
      return report(message, error); // a token the WebSocket API refuses as a subprotocol
    }
    socket.addEventListener("open", () => {
      delay = 1000;
      logState.textContent = build?.status === "pending" ? "Live: waiting for a worker…" : "Live";
    });
    socket.addEventListener("message", (event) => {
      received += 1;
      if (received === 1) logState.textContent = "Live";
      view.add([event.data]);
    });
    socket.addEventListener("close", async (event) => {
      if (signal.aborted) return;
      if (event.code === 1000) {
        ended();
        return refresh().catch(() => {});
      }
      // Dropped (network, API restart) or refused at the handshake: check the build, resume.
      try {
        await refresh();
      } catch (error) {
        report(message, error);
        if (error.status === 401 || error.status === 404) return;
      }
      logState.textContent = `Connection lost: reconnecting in ${delay / 1000} s…`;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 8000);
    });
  }

  async function storedLog() {
    logState.textContent = "Loading the log…";
    try {
      const text = await (await api(`${path}/logs`, { signal })).text();
      view.add(text ? text.replace(/\n$/, "").split("\n") : []);
      view.renderNow();
      await ended();
    } catch (error) {
      if (error.status === 404) logState.textContent = `${error.message}.`;
      else report(message, error);
    }
  }

  const save = async (button, query) => {
    button.disabled = true;
    try {
      const blob = await (await api(`${path}/logs${query}`, { signal })).blob();
      const url = URL.createObjectURL(new Blob([blob], { type: "text/plain" }));
      const link = h("a", { href: url, download: `build-${build?.number ?? ""}-${buildId.slice(0, 8)}.log`, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (error) {
      report(message, error);
    }
    button.disabled = false;
  };
  download.addEventListener("click", () => save(download, ""));
  downloadPlain.addEventListener("click", () => save(downloadPlain, "?strip_ansi=1"));

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const response = await api(`${path}/cancel`, { method: "POST", signal });
      show(await response.json());
      if (response.status === 202) cancel.textContent = "Cancelling…";
    } catch (error) {
      report(message, error);
    }
    if (cancel.textContent !== "Cancelling…") cancel.disabled = false;
  });

  retry.addEventListener("click", async () => {
    retry.disabled = true;
    try {
      const again = await json(`${path}/retry`, { method: "POST", signal });
      location.hash = `#/deployments/${deploymentId}/builds/${again.id}`;
    } catch (error) {
      report(message, error);
      retry.disabled = false;
    }
  });

  refresh()
    .then((b) => {
      if (TERMINAL.includes(b.status)) return storedLog();
      poller = setTimeout(poll, 2000);
      connect();
    })
    .catch((error) => report(message, error));
}
