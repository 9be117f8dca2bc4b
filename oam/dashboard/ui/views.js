// views.js renders the node's answers into the cards of index.html. Each
// function takes the JSON of one or two /v1 routes as the node returns it
// (node/*.go) and shows those fields, nothing made up.

import { $, el, fill, facts, cell, short, bytes, pct, num, age, clock } from "./dom.js";
import { accuracyChart } from "./chart.js";

const ROWS = 100; // rows shown per table; the count says how many there are

// node renders GET /v1/status and GET /v1/id.
export function node(st, id) {
  $("node-id").textContent = st.peer_id;
  facts("node-facts", [
    ["peer ID", st.peer_id],
    ["version", st.version],
    ["uptime", st.uptime],
    ["roles", (st.roles || []).join(", ") || "–"],
    ["services", (st.services || []).join(", ") || "–"],
    ["peers", num(st.peers)],
    ["DHT", `${st.dht_mode}, ${num(st.dht_routing_table)} in routing table`],
    ["reachability", st.reachability],
    ["private federation", st.private_federation ? "yes" : "no"],
    ["bandwidth", `in ${bytes(st.bandwidth_in_bytes)}, out ${bytes(st.bandwidth_out_bytes)}`],
    ["gossip topics", num((st.topics || []).length), (st.topics || []).join("\n")],
    ["data directory", st.data_dir],
  ]);
  fill("node-listen", (st.listen || []).map((a) => el("li", {}, a)));
  fill("node-addrs", (id.addrs || []).map((a) => el("li", {}, a)));
}

// peers renders GET /v1/peers.
export function peers(list) {
  list = list || [];
  $("peer-count").textContent = `(${list.length})`;
  fill("peer-rows", list.slice(0, ROWS).map((p) => el("tr", {},
    cell(short(p.peer_id), { class: "mono", title: p.peer_id }),
    cell(p.addr, { class: "mono small" }),
    cell(p.direction),
    cell(p.latency_ms > 0 ? p.latency_ms.toFixed(1) + " ms" : "–"),
    cell(num(p.streams)),
    cell(clock(p.connected_since)),
    cell(p.agent || ""),
  )));
}

const KINDS = [["data", "datasets"], ["model", "models"], ["compute", "compute offers"], ["testset", "test sets"]];

function itemSize(it) {
  switch (it.kind) {
    case "data":
    case "testset":
      return it.samples ? num(it.samples) + " samples" : "";
    case "model":
      return [it.arch, it.accuracy ? pct(it.accuracy) : ""].filter(Boolean).join(", ");
    case "compute":
      return [it.cores ? it.cores + " cores" : "", it.memory_mb ? bytes(it.memory_mb * 1048576) : "",
        it.gpus ? it.gpus + " GPUs" : ""].filter(Boolean).join(", ");
  }
  return "";
}

// map renders GET /v1/map (the map document) and GET /v1/map/stats.
export function map(doc, stats) {
  const items = doc.items || [];
  const pairs = [["peers in map", num((doc.peers || []).length)]];
  for (const [kind, label] of KINDS) {
    const of = items.filter((it) => it.kind === kind);
    const reach = of.filter((it) => it.reachable).length;
    pairs.push([label, `${num(of.length)} (${num(reach)} reachable)`]);
  }
  pairs.push(
    ["map version", num(doc.version)],
    ["beacons", `sent ${num(stats.beacons_sent)} (${bytes(stats.bytes_sent)}), received ${num(stats.beacons_received)} (${bytes(stats.bytes_received)})`],
    ["beacons refused", `${num(stats.rejected)} rejected, ${num(stats.ignored)} ignored`],
  );
  facts("map-facts", pairs);
  const order = Object.fromEntries(KINDS.map(([k], i) => [k, i]));
  const sorted = items.slice().sort((a, b) => (order[a.kind] ?? 9) - (order[b.kind] ?? 9) || (a.name || "").localeCompare(b.name || ""));
  fill("map-rows", sorted.slice(0, ROWS).map((it) => el("tr", {},
    cell(it.kind),
    cell(it.name || short(it.id), { title: it.id }),
    cell(short(it.owner), { class: "mono", title: it.owner }),
    cell(it.task || (it.skills || []).join(", ")),
    cell(itemSize(it)),
    cell(it.reachable ? "yes" : "no"),
    cell(age(it.age_ns)),
  )));
  $("map-more").textContent = items.length > ROWS ? `showing ${ROWS} of ${items.length} items` : "";
}

// jobs renders training jobs (GET /v1/train/jobs, updated by each job's
// event stream). live holds the ids whose events are being followed, hist
// the rounds of each job ({round, records}).
export function jobs(list, live, hist) {
  $("job-count").textContent = `(${list.length})`;
  if (list.length === 0) {
    fill("job-list", el("p", { class: "muted" }, "No training jobs on this node. Submit one with daitn train submit."));
    return;
  }
  list = list.slice().sort((a, b) => (b.updated || "").localeCompare(a.updated || ""));
  fill("job-list", list.slice(0, ROWS).map((j) => {
    const target = (j.spec && j.spec.target) || {};
    const dl = el("dl", { class: "facts" });
    const pairs = [
      ["job", j.spec && j.spec.name ? `${j.spec.name} (${j.id})` : j.id],
      ["state", el("span", { class: "state-" + j.state }, j.state, live.has(j.id) ? " · live" : "")],
      ["round", num(j.round) + (target.max_rounds ? ` of at most ${target.max_rounds}` : "")],
      ["accuracy", pct(j.accuracy) + (target.accuracy ? `, target ${pct(target.accuracy)}` : "")],
      ["loss", typeof j.loss === "number" ? j.loss.toFixed(4) : "–"],
      ["task", (j.spec && j.spec.data && j.spec.data.task) || "–"],
      ["updated", clock(j.updated)],
    ];
    if (j.reason) pairs.push(["reason", j.reason]);
    if (j.last_event) pairs.push(["last event", j.last_event]);
    for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, v));
    const h = hist.get(j.id);
    return el("div", { class: "job" }, dl, accuracyChart(h ? h.records : [], target.accuracy));
  }));
}

// tasks renders GET /v1/tasks: the tasks this node posted.
export function tasks(list) {
  list = list || [];
  $("task-count").textContent = `(${list.length})`;
  const by = {};
  for (const s of list) by[s.state] = (by[s.state] || 0) + 1;
  $("task-states").textContent = list.length
    ? Object.entries(by).map(([k, v]) => `${v} ${k}`).join(" · ")
    : "No tasks posted from this node.";
  fill("task-rows", list.slice(0, ROWS).map((s) => el("tr", {},
    cell(s.task.id, { class: "mono" }),
    cell(s.task.pool),
    cell(s.task.kind + (s.task.skill ? ` (${s.task.skill})` : "")),
    cell(s.state, { class: "state-" + s.state }),
    cell(short(s.holder), { class: "mono", title: s.holder }),
    cell(num((s.bids || []).length)),
    cell(clock(s.posted_at)),
    cell(s.reason || ""),
  )));
}

// transfer renders GET /v1/transfer/stat and GET /v1/transfer/pins.
export function transfer(st, pins) {
  const bad = Object.keys(st.bad_peers || {}).length;
  facts("transfer-facts", [
    ["stored", `${bytes(st.bytes)} in ${num(st.blocks)} blocks`],
    ["on disk", bytes(st.disk_bytes), "segment files, garbage included (daitn gc returns it)"],
    ["pins", num(st.pins)],
    ["served", `${bytes(st.served_bytes)} in ${num(st.served_blocks)} blocks, ${num(st.refused)} requests refused`],
    ["fetched", `${bytes(st.fetched_bytes)} in ${num(st.fetched_blocks)} blocks`],
    ["bad blocks", `${num(st.bad_blocks)}` + (bad ? ` from ${bad} peers` : "")],
  ]);
  pins = pins || [];
  $("pin-count").textContent = `(${pins.length})`;
  fill("pin-rows", pins.slice(0, ROWS).map((p) => el("tr", {},
    cell(short(p.root), { class: "mono", title: p.root }),
    cell(p.type),
    cell(bytes(p.size)),
    cell(num(p.blocks)),
    cell(p.complete ? "yes" : "no"),
    cell(p.private ? "yes" : "no"),
  )));
}

// infer renders the inference statistics, or says the node has none (the
// route answered 404). The fields are shown as the node names them.
export function infer(st) {
  if (st === null) {
    facts("infer-facts", [["inference", "this node does not serve inference statistics"]]);
    return;
  }
  facts("infer-facts", Object.entries(st).map(([k, v]) => [k.replaceAll("_", " "),
    typeof v === "number" ? num(v) : typeof v === "object" ? JSON.stringify(v) : String(v)]));
}

const TAIL = 300; // event lines kept

// event appends one node event to the tail, keeping it scrolled to the
// newest line unless the reader has scrolled up.
export function event(type, ev) {
  const ol = $("event-tail");
  const atEnd = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 30;
  let data = ev.data === undefined ? "" : JSON.stringify(ev.data);
  if (data.length > 400) data = data.slice(0, 400) + "…";
  ol.append(el("li", {}, el("span", { class: "muted" }, clock(ev.time)), " ", el("span", { class: "type" }, type), " ", data));
  trim(ol, atEnd);
}

// note appends a line that is not an event (stream gaps).
export function note(text) {
  const ol = $("event-tail");
  const atEnd = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 30;
  ol.append(el("li", { class: "note" }, clock(Date.now()), " — ", text));
  trim(ol, atEnd);
}

function trim(ol, atEnd) {
  while (ol.children.length > TAIL) ol.firstElementChild.remove();
  if (atEnd) ol.scrollTop = ol.scrollHeight;
}
