"""The Streams page: static HTML and vanilla JavaScript that polls ``api/streams`` every 5 s and renders it
(values are inserted as text, never as HTML). Kept in a module so it ships with the package."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Streams · airflow-rtml</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }
  h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
  .meta { color: #4a5568; font-size: .85rem; margin-bottom: 1rem; }
  section.stream { border: 1px solid #cbd5e0; border-radius: 6px; padding: .8rem 1rem; margin-bottom: 1rem; }
  section.stream h2 { font-size: 1.1rem; margin: 0 0 .5rem; }
  dl { display: grid; grid-template-columns: max-content auto max-content auto; gap: .2rem 1rem; margin: 0 0 .6rem; }
  dt { color: #4a5568; } dd { margin: 0; font-variant-numeric: tabular-nums; }
  .state-RUNNING { color: #276749; font-weight: 600; } .stalled { color: #c53030; font-weight: 600; }
  .error { color: #c53030; }
  table { border-collapse: collapse; font-size: .9rem; }
  th, td { border-bottom: 1px solid #e2e8f0; padding: .2rem .6rem; text-align: left; }
  svg { background: #f7fafc; border: 1px solid #e2e8f0; }
</style>
</head>
<body>
<h1>Streams</h1>
<div class="meta" id="meta">Loading…</div>
<div id="streams"></div>
<script>
"use strict";
const API = new URL("api/streams", window.location.href.replace(/\/?$/, "/")).href;
const AIRFLOW = window.location.origin;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? "—"));
  return node;
}
function iso(ms) { return ms == null ? "—" : new Date(ms).toISOString().replace(".000Z", "Z"); }
function dur(s) {
  if (s == null) return "—";
  s = Math.round(s);
  if (Math.abs(s) < 120) return s + " s";
  if (Math.abs(s) < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function chart(history) {
  const NS = "http://www.w3.org/2000/svg", w = 320, h = 60;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("class", "chart");
  if (history.length >= 2) {
    const t0 = history[0][0], t1 = history[history.length - 1][0];
    const ps = history.map(p => p[1]), p0 = Math.min(...ps), p1 = Math.max(...ps);
    const x = t => (t1 > t0 ? (t - t0) / (t1 - t0) : 0) * (w - 4) + 2;
    const y = p => h - 2 - (p1 > p0 ? (p - p0) / (p1 - p0) : 0.5) * (h - 4);
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", history.map(([t, p]) => x(t) + "," + y(p)).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", "#3182ce"); line.setAttribute("stroke-width", "2");
    svg.append(line);
  }
  return svg;
}
function runLink(w) {
  const href = AIRFLOW + "/dags/" + encodeURIComponent(w.dag_id) + "/runs/" + encodeURIComponent(w.run_id)
             + "/tasks/" + encodeURIComponent(w.task_id) + (w.map_index >= 0 ? "/mapped/" + w.map_index : "");
  return el("a", {href, target: "_top"}, w.dag_id + " / " + w.run_id);
}
function render(data) {
  const root = document.getElementById("streams");
  const nwaits = data.streams.reduce((n, s) => n + s.waits.length, 0);
  document.getElementById("meta").textContent =
    data.streams.length + " streams · " + nwaits + " open waits" +
    (data.unrendered_waits ? " (+ " + data.unrendered_waits + " started in the triggerer, not shown: their " +
     "arguments are rendered there only)" : "") + " · as of " + iso(data.generated_at * 1000);
  root.replaceChildren(...data.streams.map(s => {
    const sec = el("section", {class: "stream", "data-stream": s.stream});
    const h2 = el("h2", {}, s.stream);
    if (s.flink_ui_url) h2.append(" ", el("a", {href: s.flink_ui_url, target: "_blank", rel: "noopener", "data-field": "flink_ui"}, "Flink web UI"));
    sec.append(h2);
    const dl = el("dl", {},
      el("dt", {}, "Job state"), el("dd", {class: "state state-" + s.state, "data-field": "state"}, s.state),
      el("dt", {}, "Job id"), el("dd", {"data-field": "job_id"}, s.job_id),
      el("dt", {}, "Watermark"), el("dd", {"data-field": "watermark", "data-ms": String(s.watermark_ms)}, iso(s.watermark_ms)),
      el("dt", {}, "Lag behind wall clock"), el("dd", {"data-field": "lag"}, dur(s.lag_ms == null ? null : s.lag_ms / 1000)),
      el("dt", {}, "Rate"), el("dd", {"data-field": "rate"}, s.rate_ms_per_s == null ? "—" : (s.rate_ms_per_s / 1000).toFixed(2) + " event-s/s"),
      el("dt", {}, "Stalled"), el("dd", {"data-field": "stalled", class: s.stalled ? "stalled" : ""}, s.stalled ? "yes" : "no"),
      el("dt", {}, "Last completed checkpoint"), el("dd", {"data-field": "checkpoint"}, s.last_checkpoint_id),
      el("dt", {}, "Flink connection"), el("dd", {}, s.flink_conn_id));
    sec.append(dl);
    if (s.error) sec.append(el("p", {class: "error", "data-field": "error"}, s.error));
    sec.append(chart(s.history));
    const table = el("table", {class: "waits"}, el("tr", {},
      el("th", {}, "DAG run"), el("th", {}, "Task"), el("th", {}, "Waits for progress ≥"), el("th", {}, "Waiting"), el("th", {}, "ETA")));
    for (const w of s.waits) {
      table.append(el("tr", {class: "wait", "data-task": w.task_id},
        el("td", {}, runLink(w)), el("td", {}, w.task_id + (w.map_index >= 0 ? "[" + w.map_index + "]" : "")),
        el("td", {"data-field": "target", "data-ms": String(w.target_ms)}, iso(w.target_ms)),
        el("td", {}, dur(w.waiting_s)), el("td", {"data-field": "eta"}, dur(w.eta_s))));
    }
    sec.append(el("h3", {}, "Open waits (" + s.waits.length + ")"), table);
    return sec;
  }));
  if (!data.streams.length) root.append(el("p", {}, "No open waits on a stream."));
}
async function refresh() {
  try {
    const r = await fetch(API, {credentials: "same-origin"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    document.getElementById("meta").textContent = "Could not load streams: " + e.message;
  }
}
refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
"""
