// The dashboard: sign-in, then three views on hash routes. Each view gets an AbortSignal
// that is aborted when the route changes, which stops its timers, requests and sockets.

import { api, setUnauthorizedHandler, token } from "./api.js";
import { buildView } from "./build.js";
import { buildsView } from "./builds.js";
import { deploymentsView } from "./deployments.js";
import { farmView } from "./farm.js";
import { h, tick } from "./dom.js";

const ID = "([0-9a-f-]{36})";
const ROUTES = [
  [new RegExp("^#/deployments$"), deploymentsView],
  [new RegExp(`^#/deployments/${ID}$`), buildsView],
  [new RegExp(`^#/deployments/${ID}/builds/${ID}(?:#L\\d+)?$`), buildView],
  [new RegExp("^#/farm$"), farmView],
];

const main = document.getElementById("main");
const signOutButton = document.getElementById("sign-out");
const nav = document.getElementById("nav");
let current = new AbortController();

function render(notice) {
  current.abort();
  current = new AbortController();
  const signedIn = Boolean(token.get());
  signOutButton.hidden = nav.hidden = !signedIn;
  if (!signedIn) return show(signInView(notice), "Sign in");
  const [path, query] = location.hash.split("?");
  for (const [pattern, view] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      const root = h("div");
      show(root);
      view(root, { ids: match.slice(1), query: new URLSearchParams(query), signal: current.signal });
      return;
    }
  }
  location.replace("#/deployments");
}

/** Puts a view in <main> and moves the focus to its heading, for keyboard and screen readers. */
function show(root, title) {
  main.replaceChildren(root);
  if (title) document.title = `${title} · Build farm`;
  queueMicrotask(() => root.querySelector("h1")?.focus({ preventScroll: true }));
}

function signInView(notice) {
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help",
  });
  const message = h("p", { class: "message error", role: "alert" }, notice ?? "");
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card signin" },
    h("h1", { tabindex: "-1" }, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "hint" },
      "Create one with ",
      h("code", {}, "buildfarm token create --tenant NAME --name NAME"),
      ". It stays in this tab only and is forgotten when the tab closes.",
    ),
    submit,
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    submit.disabled = true;
    message.textContent = "";
    try {
      await api("/deployments?limit=1", { useToken: value });
      token.set(value);
      if (!location.hash.startsWith("#/")) location.hash = "#/deployments";
      render();
    } catch (error) {
      message.textContent =
        error.status === 401
          ? "This token was not accepted: it is wrong or has been revoked."
          : error.message;
      submit.disabled = false;
      input.focus();
    }
  });
  return form;
}

setUnauthorizedHandler(() => {
  token.clear();
  render("The API no longer accepts this token: sign in again.");
});
signOutButton.addEventListener("click", () => {
  token.clear();
  render();
});
window.addEventListener("hashchange", () => render());
setInterval(tick, 1000);
render();
