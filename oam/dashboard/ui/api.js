// api.js is the page's only way to the node: the token, GETs of the /v1
// routes and server-sent event streams. Routes are written as whole string
// literals starting with /v1/, with {name} for path parameters, so the Go
// tests can find every route the page calls and check the node serves it.

const KEY = "daitn.token";

// takeToken moves a token from the URL fragment (#token=...) into
// sessionStorage and out of the address bar, so it is not bookmarked, kept
// in history or shown to someone looking at the screen. It returns the
// token this tab holds, or "".
export function takeToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY) || "";
}

export function setToken(tok) { sessionStorage.setItem(KEY, tok.trim()); }

function token() { return sessionStorage.getItem(KEY) || ""; }

// APIError is a failed call. kind is "down" (no answer: the node stopped
// or the address changed), "auth" (401: wrong or missing token) or "http"
// (any other non-2xx, message from the node's {"error": ...} body).
export class APIError extends Error {
  constructor(status, message, kind) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

// path fills the {name} placeholders of a route with encoded values.
export function path(route, params) {
  return route.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(params[k]));
}

async function request(route, signal) {
  let resp;
  try {
    resp = await fetch(route, {
      headers: { Authorization: "Bearer " + token() },
      cache: "no-store",
      signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new APIError(0, "the node does not answer at " + location.host + " (stopped, or restarted on another port?)", "down");
  }
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    if (resp.status === 404) msg = "this node does not serve " + route.split("?")[0];
    try {
      const body = await resp.json();
      if (body && body.error) msg = body.error;
    } catch (_) { /* not JSON: the mux's own 404 or 405 */ }
    throw new APIError(resp.status, msg, resp.status === 401 ? "auth" : "http");
  }
  return resp;
}

// get returns the decoded JSON answer of a GET.
export async function get(route, signal) {
  const resp = await request(route, signal);
  return resp.json();
}

// getOptional is get for routes a node may not have (a service not built
// into it): null when the route answers 404.
export async function getOptional(route, signal) {
  try {
    return await get(route, signal);
  } catch (e) {
    if (e instanceof APIError && e.status === 404) return null;
    throw e;
  }
}

// stream reads server-sent events from route and calls onEvent(type, event)
// for each, where event is the node's JSON {type, time, data}. EventSource
// cannot send the Authorization header, so the stream is read with fetch and
// parsed here. It resolves when the node ends the stream and rejects on
// errors and when signal aborts.
export async function stream(route, onEvent, signal) {
  const resp = await request(route, signal);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let type = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      let line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length > 0) dispatch(type, data.join("\n"), onEvent);
        type = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "event") type = val;
      else if (field === "data") data.push(val);
    }
  }
}

function dispatch(type, text, onEvent) {
  let ev;
  try {
    ev = JSON.parse(text);
  } catch (_) {
    ev = { type, data: text };
  }
  onEvent(type || ev.type || "message", ev);
}
