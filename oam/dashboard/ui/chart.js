// chart.js draws a job's accuracy per round as a small inline SVG: no
// library, nothing fetched.

const NS = "http://www.w3.org/2000/svg";
const W = 260, H = 90, L = 30, R = 8, T = 8, B = 16;

function svg(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// accuracyChart returns an <svg> of accuracy (0..1) against round. Rounds
// without an evaluation (accuracy < 0) are left out. target, if > 0, is
// drawn as a dashed line.
export function accuracyChart(history, target) {
  const pts = (history || [])
    .filter((r) => typeof r.accuracy === "number" && r.accuracy >= 0)
    .map((r) => ({ x: r.round, y: r.accuracy }))
    .sort((a, b) => a.x - b.x);
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  root.appendChild(svg("title", {}, pts.length
    ? `accuracy per round, last ${(pts[pts.length - 1].y * 100).toFixed(1)}% at round ${pts[pts.length - 1].x}`
    : "no evaluated rounds yet"));
  // The y axis starts at the tenth below the lowest point, so the climb of
  // a model already at 90% is still visible.
  let lo = 0;
  const ys = pts.map((p) => p.y).concat(target > 0 ? [target] : []);
  if (ys.length) lo = Math.max(0, Math.floor(Math.min(...ys) * 10) / 10);
  const hi = 1;
  const maxX = Math.max(1, ...pts.map((p) => p.x));
  const minX = pts.length ? Math.min(...pts.map((p) => p.x)) : 0;
  const sx = (x) => L + (maxX === minX ? (W - L - R) / 2 : ((x - minX) / (maxX - minX)) * (W - L - R));
  const sy = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);

  root.appendChild(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  root.appendChild(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  root.appendChild(svg("text", { x: 2, y: T + 8 }, `${Math.round(hi * 100)}%`));
  root.appendChild(svg("text", { x: 2, y: H - B }, `${Math.round(lo * 100)}%`));
  if (pts.length) {
    root.appendChild(svg("text", { x: L, y: H - 3 }, `round ${minX}`));
    root.appendChild(svg("text", { x: W - R, y: H - 3, "text-anchor": "end" }, `${maxX}`));
  } else {
    root.appendChild(svg("text", { x: L + 8, y: H / 2 }, "no evaluated rounds yet"));
  }
  if (target > 0 && target <= 1) {
    root.appendChild(svg("line", { class: "target", x1: L, y1: sy(target), x2: W - R, y2: sy(target) }));
  }
  if (pts.length > 1) {
    root.appendChild(svg("polyline", { class: "line", points: pts.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" ") }));
  }
  for (const p of pts) {
    const c = svg("circle", { class: "dot", cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 2 });
    c.appendChild(svg("title", {}, `round ${p.x}: ${(p.y * 100).toFixed(2)}%`));
    root.appendChild(c);
  }
  return root;
}
