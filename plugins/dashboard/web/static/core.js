/* microray dashboard: shared helpers (DOM building, API calls, formatting, SVG charts).
   No framework, no build step. Everything is rendered with textContent, never innerHTML. */
"use strict";

const MR = (window.MR = window.MR || {});

/* ---- the session token: taken from ?token=, kept in sessionStorage, stripped from the URL ---- */
MR.TOKEN_KEY = "microray_token";
MR.takeToken = function () {
  const params = new URLSearchParams(window.location.search);
  const t = params.get("token");
  if (t) {
    sessionStorage.setItem(MR.TOKEN_KEY, t);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : "") + window.location.hash);
  }
  return sessionStorage.getItem(MR.TOKEN_KEY) || "";
};
MR.token = () => sessionStorage.getItem(MR.TOKEN_KEY) || "";

/* ---- DOM ---- */
MR.h = function (tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
};
const h = MR.h;

MR.svg = function (tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) if (c) el.append(c);
  return el;
};

/* A table with a caption and column headers. columns: [{label, value(row) -> node|string, cls}] */
MR.table = function (caption, columns, rows, opts) {
  opts = opts || {};
  const thead = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.cls }, c.label))));
  const body = rows.length
    ? rows.map((r) => h("tr", opts.rowAttrs ? opts.rowAttrs(r) : {}, columns.map((c) => h("td", { class: c.cls }, c.value(r)))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, opts.empty || "Nothing to show."))];
  return h("div", { class: "table-wrap" },
    h("table", { class: "data" }, h("caption", {}, caption), thead, h("tbody", {}, body)));
};

MR.badge = (state) => h("span", { class: "badge s-" + String(state || "unknown").toLowerCase() }, state || "—");

MR.short = (id, n) => (id ? String(id).slice(0, n || 8) : "—");

MR.bytes = function (n) {
  if (n === null || n === undefined || n < 0) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
};

MR.num = (n, d) => (n === null || n === undefined ? "—" : Number(n).toLocaleString(undefined, { maximumFractionDigits: d === undefined ? 2 : d }));

MR.time = function (t) {
  if (!t) return "—";
  const d = new Date(t * 1000);
  return d.toLocaleTimeString();
};

MR.duration = function (s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return (s * 1000).toFixed(1) + " ms";
  if (s < 120) return s.toFixed(2) + " s";
  return (s / 60).toFixed(1) + " min";
};

/* A labelled <meter> with its numbers beside it. */
MR.meter = function (label, used, total, fmt) {
  fmt = fmt || MR.num;
  const pct = total > 0 ? Math.round((100 * used) / total) : 0;
  return h("div", { class: "meter" },
    h("span", { class: "meter-label" }, label),
    h("meter", { min: 0, max: total || 1, value: used || 0, high: (total || 1) * 0.9, optimum: 0, "aria-label": label + " used" }),
    h("span", { class: "meter-num" }, fmt(used) + " / " + fmt(total) + " (" + pct + "%)"));
};

/* ---- API ---- */
MR.ApiError = class extends Error {
  constructor(status, message) { super(message); this.status = status; }
};

MR.api = async function (path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new MR.ApiError(r.status, data.error || r.statusText);
  return data;
};

MR.post = async function (path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Microray-Token": MR.token() },
    body: JSON.stringify(body || {}),
    cache: "no-store",
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new MR.ApiError(r.status, data.error || r.statusText);
  return data;
};

/* ---- an SVG line chart of time series (hand-written; no library) ----
   series: [{name, cls, points: [[t, v], ...]}]; returns a <figure> with the chart and a legend. */
MR.lineChart = function (title, series, opts) {
  opts = opts || {};
  const W = 640, H = 180, L = 74, R = 12, T = 12, B = 26;
  const fmt = opts.format || ((v) => MR.num(v, 1));
  const all = series.flatMap((s) => s.points);
  const now = opts.now || Date.now() / 1000;
  const span = opts.span || 300;
  const t0 = now - span;
  let ymax = Math.max(opts.minMax || 1, ...all.map((p) => p[1]));
  ymax = niceMax(ymax);
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const summary = series.map((s) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    const max = s.points.reduce((m, p) => Math.max(m, p[1]), 0);
    return s.name + ": now " + fmt(last) + ", max " + fmt(max);
  }).join("; ");
  const svg = MR.svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title + ". " + summary },
    MR.svg("title", { text: title }));
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(MR.svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(MR.svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end", text: fmt(v) }));
  }
  const mins = (s) => "−" + (s / 60).toFixed(s % 60 ? 1 : 0) + " min";
  for (const [t, label] of [[t0, mins(span)], [t0 + span / 2, mins(span / 2)], [now, "now"]]) {
    svg.append(MR.svg("text", { x: x(t), y: H - 8, class: "axis", "text-anchor": t === t0 ? "start" : t === now ? "end" : "middle", text: label }));
  }
  for (const s of series) {
    const pts = s.points.filter((p) => p[0] >= t0);
    if (!pts.length) continue;
    const d = pts.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
    svg.append(MR.svg("path", { d, class: "series " + s.cls, "data-series": s.name, "data-points": pts.length }));
  }
  const legend = h("ul", { class: "legend" }, series.map((s) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    return h("li", {}, h("span", { class: "swatch " + s.cls, "aria-hidden": "true" }), s.name + ": " + fmt(last));
  }));
  return h("figure", { class: "chart-fig" }, h("figcaption", {}, title), svg, legend);
};

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
