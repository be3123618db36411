// The API client: the token lives in this tab's sessionStorage and travels only in the
// Authorization header (HTTP) or the WebSocket subprotocols — never in a URL or a cookie.

export const API = "/api/v1";
const KEY = "buildfarm.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Called when the API refuses the token (revoked meanwhile): the app signs out.
let onUnauthorized = () => {};
export const setUnauthorizedHandler = (handler) => (onUnauthorized = handler);

function failure(status, body, useToken) {
  if (status === 401 && useToken === token.get()) onUnauthorized();
  const message = body?.message ?? `The API answered ${status}`;
  return new ApiError(status, message);
}

/** fetch() on the API with the token; throws ApiError (status 0: unreachable). */
export async function api(path, { method = "GET", body, signal, useToken = token.get() } = {}) {
  const headers = { Authorization: `Bearer ${useToken}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The API could not be reached: check the connection");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw failure(response.status, body, useToken);
  }
  return response;
}

export async function json(path, options) {
  return (await api(path, options)).json();
}

/** A list page: its items and the cursor of the next page (from the Link header), or null. */
export async function page(path, options) {
  const response = await api(path, options);
  const link = /<([^>]*)>\s*;\s*rel="?next"?/.exec(response.headers.get("Link") ?? "");
  const next = link ? new URL(link[1], location.origin).searchParams.get("cursor") : null;
  return { items: await response.json(), next };
}

/** Uploads a .tar.gz as multipart with XMLHttpRequest, the one browser API that reports
 * upload progress: onProgress(0..1). */
export function upload(deploymentId, file, onProgress) {
  const useToken = token.get();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}/deployments/${deploymentId}/upload`);
    xhr.setRequestHeader("Authorization", `Bearer ${useToken}`);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && onProgress(e.loaded / e.total));
    xhr.addEventListener("load", () =>
      xhr.status === 200 ? resolve(xhr.response) : reject(failure(xhr.status, xhr.response, useToken)),
    );
    xhr.addEventListener("error", () => reject(new ApiError(0, "The upload failed: the connection was lost")));
    const form = new FormData();
    form.append("archive", file, file.name);
    xhr.send(form);
  });
}

/** The log WebSocket from line after + 1, the token offered as a subprotocol. */
export function logSocket(buildPath, after) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = after > 0 ? `?after=${after}` : "";
  return new WebSocket(`${scheme}://${location.host}${API}${buildPath}/logs/stream${query}`, [
    "bearer",
    token.get(),
  ]);
}

/** Whether the API serves an operation (the retry route, for one), from its description. */
let description;
export async function hasOperation(path, method) {
  description ??= fetch(`${API}/openapi.json`, { credentials: "omit" })
    .then((r) => r.json())
    .catch(() => ({ paths: {} }));
  return Boolean((await description).paths?.[path]?.[method]);
}
