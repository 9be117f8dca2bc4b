// dom.js: building elements and formatting numbers. Every value from the
// node goes in as text (textContent), never as HTML: names and tasks in the
// map come from other peers and must not be able to run script here.

export const $ = (id) => document.getElementById(id);

// el builds an element. props: class, title, and any attribute; kids are
// nodes or strings (added as text).
export function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    e.setAttribute(k === "className" ? "class" : k, String(v));
  }
  for (const k of kids) {
    if (k === undefined || k === null) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

// fill replaces the children of the element with id.
export function fill(id, ...kids) {
  $(id).replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined));
}

// facts renders [label, value] pairs into a <dl>.
export function facts(id, pairs) {
  fill(id, pairs.flatMap(([k, v, title]) => [el("dt", {}, k), el("dd", { title }, v)]));
}

// cell is a <td>; a string or number is its text.
export const cell = (v, props) => el("td", props, v);

export function short(id) {
  if (!id) return "";
  return id.length > 14 ? "…" + id.slice(-10) : id;
}

export function bytes(n) {
  if (typeof n !== "number" || !isFinite(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + u[i];
}

export function pct(x) {
  return typeof x === "number" && x >= 0 ? (x * 100).toFixed(1) + "%" : "–";
}

export const num = (n) => (typeof n === "number" ? n.toLocaleString() : "–");

// age formats a duration in nanoseconds, as Go's time.Duration marshals.
export function age(ns) {
  if (typeof ns !== "number" || ns < 0) return "–";
  const s = ns / 1e9;
  if (s < 60) return s.toFixed(0) + "s";
  if (s < 3600) return (s / 60).toFixed(0) + "m";
  if (s < 86400) return (s / 3600).toFixed(1) + "h";
  return (s / 86400).toFixed(1) + "d";
}

// clock formats a time (ISO string or Unix milliseconds) as local time.
export function clock(t) {
  if (!t) return "–";
  const d = new Date(t);
  if (isNaN(d)) return "–";
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

// showError shows err in a card's error line, or hides it when err is null.
export function showError(card, err) {
  const p = $(card).querySelector(".err");
  if (!p) return;
  p.hidden = !err;
  p.textContent = err ? String(err.message || err) : "";
}
