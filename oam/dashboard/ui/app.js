// app.js runs the dashboard: it takes the token, polls the /v1 routes
// while the tab is visible, follows the node's event stream and the event
// streams of running training jobs, and shows failures on the page.

import { takeToken, setToken, get, getOptional, stream, path, APIError } from "./api.js";
import { $, showError } from "./dom.js";
import * as view from "./views.js";

const FAST = 5000; // ms between polls of the cheap routes
const SLOW = 15000; // transfer statistics walk the whole block store: less often
const RETRY = 5000; // ms before a dropped node event stream is reopened
// Job streams followed at once. A browser keeps at most six HTTP/1.1
// connections to one host and each open stream holds one; polls need the
// others.
const MAX_LIVE = 2;

const polls = [
  { card: "node", every: FAST, load: async (s) => {
    const [st, id] = await Promise.all([get("/v1/status", s), get("/v1/id", s)]);
    view.node(st, id);
  } },
  { card: "peers", every: FAST, load: async (s) => view.peers(await get("/v1/peers", s)) },
  { card: "map", every: FAST, load: async (s) => {
    const [doc, stats] = await Promise.all([get("/v1/map?edges=0", s), get("/v1/map/stats", s)]);
    view.map(doc, stats);
  } },
  { card: "jobs", every: FAST, load: async (s) => {
    setJobs(await get("/v1/train/jobs", s));
    await loadHistories(s);
  } },
  { card: "tasks", every: FAST, load: async (s) => view.tasks(await get("/v1/tasks", s)) },
  { card: "transfer", every: SLOW, load: async (s) => {
    const [st, pins] = await Promise.all([get("/v1/transfer/stat", s), get("/v1/transfer/pins", s)]);
    view.transfer(st, pins);
  } },
  // Inference is being added to the node; a node without it answers 404.
  { card: "infer", every: FAST, load: async (s) => view.infer(await getOptional("/v1/infer/stats", s)) },
];

let running = false; // polling and streams are on
let timer = 0;
let pollAbort = new AbortController();
const streams = new Map(); // name -> AbortController
const jobs = new Map(); // job id -> job as last seen
// job id -> {round, records}: the rounds of a job for its chart. The job
// list leaves them out; they come from the job itself and its stream.
const hist = new Map();
const live = new Set(); // ids of jobs whose event stream is open

// --- failures -------------------------------------------------------------

function banner(text) {
  const b = $("banner");
  b.hidden = !text;
  b.textContent = text || "";
}

function connected(ok, text) {
  const c = $("conn");
  c.textContent = text;
  c.className = "pill " + (ok ? "ok" : "bad");
}

// failed shows err on its card and, for errors that concern the whole page
// (wrong token, node gone), in the banner.
function failed(card, err) {
  if (err.name === "AbortError") return;
  showError(card, err);
  if (err instanceof APIError && err.kind === "auth") {
    stop();
    connected(false, "token refused");
    banner("The node refused the token: " + err.message + "\nThe node may have a new token (api.token). " +
      "Run `daitn dashboard` again for a fresh link, or paste the token below.");
    $("token-form").hidden = false;
  } else if (err instanceof APIError && err.kind === "down") {
    connected(false, "node not answering");
    banner("Cannot reach the node: " + err.message + "\nRetrying every few seconds. If the node was restarted, " +
      "its API may be on a new port: run `daitn dashboard` again.");
  }
}

function succeeded(card) {
  showError(card, null);
  if (card === "node") {
    connected(true, "connected");
    banner("");
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }
}

// --- polling --------------------------------------------------------------

async function runPoll(p) {
  p.busy = true;
  p.last = Date.now();
  try {
    await p.load(pollAbort.signal);
    succeeded(p.card);
  } catch (e) {
    failed(p.card, e);
  } finally {
    p.busy = false;
  }
}

function tick() {
  if (!running || document.hidden) return;
  const now = Date.now();
  for (const p of polls) {
    if (!p.busy && now - (p.last || 0) >= p.every) runPoll(p);
  }
}

// --- streams --------------------------------------------------------------

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// follow reads a stream under name until it is aborted. With retry it is
// reopened after it ends or fails; without, onEnd runs when it stops.
function follow(name, card, route, onEvent, { retry, onOpen, onDrop, onEnd }) {
  const ac = new AbortController();
  streams.set(name, ac);
  (async () => {
    for (;;) {
      try {
        if (onOpen) onOpen();
        await stream(route, onEvent, ac.signal);
        if (!ac.signal.aborted) showError(card, null);
      } catch (e) {
        if (ac.signal.aborted) break;
        failed(card, e);
      }
      if (!retry || ac.signal.aborted) break;
      if (onDrop) onDrop();
      await sleep(RETRY, ac.signal);
      if (ac.signal.aborted) break;
    }
    if (streams.get(name) === ac) streams.delete(name);
    if (onEnd) onEnd();
  })();
}

function followEvents() {
  let opened = false;
  follow("events", "events", "/v1/events", (type, ev) => {
    if (!opened) { opened = true; $("events-state").textContent = "live"; showError("events", null); }
    view.event(type, ev);
  }, {
    retry: true,
    onOpen: () => { opened = false; $("events-state").textContent = "connecting…"; },
    onDrop: () => { $("events-state").textContent = "disconnected, retrying"; view.note("event stream dropped; reconnecting"); },
  });
}

// --- training jobs --------------------------------------------------------

function renderJobs() { view.jobs([...jobs.values()], live, hist); }

// loadHistories fetches the rounds of each job whose chart is behind its
// round count and whose stream does not bring them.
async function loadHistories(signal) {
  for (const j of [...jobs.values()]) {
    const h = hist.get(j.id);
    if (live.has(j.id) || (h && h.round === j.round)) continue;
    const full = await get(path("/v1/train/jobs/{id}", { id: j.id }), signal);
    hist.set(j.id, { round: full.round, records: full.history || [] });
  }
  renderJobs();
}

function setJobs(list) {
  const old = new Map(jobs);
  jobs.clear();
  for (const j of list || []) {
    // The last stream message is not part of the job record; keep it.
    if (old.has(j.id) && old.get(j.id).last_event) j.last_event = old.get(j.id).last_event;
    jobs.set(j.id, j);
  }
  renderJobs();
  followJobs();
}

const terminal = (st) => st === "stopped" || st === "done" || st === "failed";

// followJobs opens the event streams of the most recently updated jobs
// that are still going, so rounds appear as they finish; the poll keeps
// the others current.
function followJobs() {
  if (!running || document.hidden) return;
  const going = [...jobs.values()].filter((j) => !terminal(j.state))
    .sort((a, b) => (b.updated || "").localeCompare(a.updated || ""));
  for (const j of going) {
    if (live.size >= MAX_LIVE) break;
    if (live.has(j.id)) continue;
    live.add(j.id);
    const id = j.id;
    follow("job:" + id, "jobs", path("/v1/train/jobs/{id}/events", { id }), (type, ev) => jobEvent(id, type, ev.data || {}), {
      retry: false,
      onEnd: () => { live.delete(id); renderJobs(); },
    });
  }
  renderJobs();
}

// jobEvent applies one event of a job's stream (train.Event, or the job
// itself as the first event) to the job shown.
function jobEvent(id, type, d) {
  if (type === "job") {
    hist.set(id, { round: d.round, records: d.history || [] });
    jobs.set(id, d);
  } else {
    const j = jobs.get(id);
    if (!j) return;
    if (type === "round" && d.record) {
      const rec = d.record;
      const h = hist.get(id) || { round: 0, records: [] };
      h.records = h.records.filter((r) => r.round !== rec.round).concat([rec]);
      h.round = Math.max(h.round, rec.round);
      hist.set(id, h);
      j.round = Math.max(j.round || 0, rec.round);
      if (rec.accuracy >= 0) j.accuracy = rec.accuracy;
      j.loss = rec.loss;
    } else if (type === "state") {
      j.state = d.state;
      if (d.message) j.reason = d.message;
    }
    if (d.message) j.last_event = `${type}: ${d.message}`;
    if (d.time) j.updated = d.time;
  }
  renderJobs();
}

// --- start, stop, visibility ----------------------------------------------

function start() {
  if (running) return;
  running = true;
  pollAbort = new AbortController();
  for (const p of polls) p.last = 0;
  followEvents();
  tick();
  timer = setInterval(tick, 1000);
}

// stop ends polling and closes every stream: a hidden tab costs the node
// nothing.
function stop() {
  if (!running) return;
  running = false;
  clearInterval(timer);
  pollAbort.abort();
  for (const ac of streams.values()) ac.abort();
  streams.clear();
  live.clear();
}

let paused = false; // stopped because the tab is hidden, to restart when shown

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    if (running) {
      stop();
      view.note("tab hidden: polling and streams paused, events in between are not shown");
      $("events-state").textContent = "paused";
      paused = true;
    }
  } else if (paused) {
    paused = false;
    start();
  }
});

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const tok = $("token-input").value.trim();
  if (!tok) return;
  setToken(tok);
  $("token-input").value = "";
  $("token-form").hidden = true;
  $("main").hidden = false;
  banner("");
  start();
});

if (takeToken()) {
  $("main").hidden = false;
  // A browser opened by `daitn dashboard` may load the page in a
  // background tab: start when it is shown.
  if (document.hidden) paused = true;
  else start();
} else {
  connected(false, "no token");
  $("token-form").hidden = false;
}
