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
  section.focus { border: 2px solid #3182ce; } tr.focus { background: #ebf8ff; font-weight: 600; }
  .note { background: #fffbea; border: 1px solid #f6e05e; padding: .4rem .8rem; margin-bottom: 1rem; }
</style>
</head>
<body>
<h1>Streams</h1>
<div class="meta" id="meta">Loading…</div>
<div class="note" id="focus-note" hidden></div>
<div id="streams"></div>
<script>
"use strict";
const API = new URL("api/streams", window.location.href.replace(/\/?$/, "/")).href;
const AIRFLOW = window.location.origin;
// A task's "Stream progress" link opens ?stream=<job>&dag_id=…&run_id=…&task_id=…[&map_index=…]: that stream
// first and outlined, that task's wait highlighted.
const FOCUS = Object.fromEntries(new URLSearchParams(window.location.search));
let scrolled = false;
function focusedWait(w) {
  return FOCUS.task_id === w.task_id && FOCUS.dag_id === w.dag_id && FOCUS.run_id === w.run_id
    && String(FOCUS.map_index ?? -1) === String(w.map_index);
}

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
             + (w.task_id ? "/tasks/" + encodeURIComponent(w.task_id) : "") + (w.map_index >= 0 ? "/mapped/" + w.map_index : "");
  return el("a", {href, target: "_top"}, w.dag_id + " / " + w.run_id);
}
function render(data) {
  const root = document.getElementById("streams");
  const nwaits = data.streams.reduce((n, s) => n + s.waits.length, 0);
  document.getElementById("meta").textContent =
    data.streams.length + " streams · " + nwaits + " open waits" +
    (data.unrendered_waits ? " (+ " + data.unrendered_waits + " started in the triggerer, not shown: their " +
     "arguments are rendered there only)" : "") + " · as of " + iso(data.generated_at * 1000);
  const streams = FOCUS.stream ? [...data.streams].sort((a, b) => (b.stream === FOCUS.stream) - (a.stream === FOCUS.stream))
                               : data.streams;
  const note = document.getElementById("focus-note");
  const found = streams.some(s => s.stream === FOCUS.stream);
  note.hidden = !FOCUS.stream || found;
  note.textContent = FOCUS.stream && !found ? "No open wait on " + FOCUS.stream + " now" +
    (FOCUS.task_id ? " (the wait of " + FOCUS.task_id + " has ended, or has not started)" : "") +
    ". The streams with open waits are listed below." : "";
  root.replaceChildren(...streams.map(s => {
    const sec = el("section", {class: "stream" + (s.stream === FOCUS.stream ? " focus" : ""), "data-stream": s.stream});
    const h2 = el("h2", {}, s.stream, s.source === "kafka" ? el("span", {class: "src"}, " · Kafka progress topic " + s.topic) : "");
    if (s.flink_ui_url) h2.append(" ", el("a", {href: s.flink_ui_url, target: "_blank", rel: "noopener", "data-field": "flink_ui"}, "Flink web UI"));
    sec.append(h2);
    const kafka = s.source === "kafka";
    const dl = el("dl", {},
      ...(kafka ? [
        el("dt", {}, "Producers"), el("dd", {"data-field": "sources"}, Object.entries(s.sources || {}).map(
          ([src, ms]) => src + " " + iso(ms)).join(", ") || "none reported"),
        el("dt", {}, "Expected producers"), el("dd", {}, s.expected_sources ? s.expected_sources.join(", ") : "any"),
        el("dt", {}, "Malformed signals"), el("dd", {"data-field": "malformed"}, String(s.malformed)),
      ] : [
        el("dt", {}, "Job state"), el("dd", {class: "state state-" + s.state, "data-field": "state"}, s.state),
        el("dt", {}, "Job id"), el("dd", {"data-field": "job_id"}, s.job_id),
      ]),
      el("dt", {}, "Watermark"), el("dd", {"data-field": "watermark", "data-ms": String(s.watermark_ms)}, iso(s.watermark_ms)),
      el("dt", {}, "Lag behind wall clock"), el("dd", {"data-field": "lag"}, dur(s.lag_ms == null ? null : s.lag_ms / 1000)),
      el("dt", {}, "Rate"), el("dd", {"data-field": "rate"}, s.rate_ms_per_s == null ? "—" : (s.rate_ms_per_s / 1000).toFixed(2) + " event-s/s"),
      el("dt", {}, "Stalled"), el("dd", {"data-field": "stalled", class: s.stalled ? "stalled" : ""},
        s.ended ? "no: input ended" : s.stalled ? "yes: unchanged for " + dur(s.unchanged_s)
          : s.unchanged_s == null ? "—" : "no"),
      ...(kafka ? [] : [el("dt", {}, "Last completed checkpoint"), el("dd", {"data-field": "checkpoint"}, s.last_checkpoint_id)]),
      el("dt", {}, kafka ? "Kafka connection" : "Flink connection"), el("dd", {}, s.conn_id));
    sec.append(dl);
    if (s.error) sec.append(el("p", {class: "error", "data-field": "error"}, s.error));
    sec.append(chart(s.history));
    const table = el("table", {class: "waits"}, el("tr", {},
      el("th", {}, "DAG run"), el("th", {}, "Task"), el("th", {}, "Waits for progress ≥"), el("th", {}, "Waiting"), el("th", {}, "ETA")));
    for (const w of s.waits) {
      table.append(el("tr", {class: "wait" + (focusedWait(w) ? " focus" : ""), "data-task": w.task_id},
        el("td", {}, runLink(w)), el("td", {}, w.task_id + (w.map_index >= 0 ? "[" + w.map_index + "]" : "")),
        el("td", {"data-field": "target", "data-ms": String(w.target_ms)}, iso(w.target_ms)),
        el("td", {}, dur(w.waiting_s)), el("td", {"data-field": "eta"}, dur(w.eta_s))));
    }
    sec.append(el("h3", {}, "Open waits (" + s.waits.length + ")"), table);
    if (s.windows && s.windows.length) {
      const wt = el("table", {class: "windows"}, el("tr", {},
        el("th", {}, "Window"), el("th", {}, "Asset"), el("th", {}, "Emitted"), el("th", {}, "Runs it scheduled")));
      for (const w of s.windows) {
        const runs = el("td", {"data-field": "runs"});
        w.runs.forEach((r, i) => runs.append(i ? ", " : "", runLink({dag_id: r.dag_id, run_id: r.run_id, map_index: -1}),
                                             " (" + r.state + ")"));
        if (!w.runs.length) runs.append("none yet");
        wt.append(el("tr", {class: "window", "data-window-start": String(w.window_start_ms)},
          el("td", {}, iso(w.window_start_ms) + " – " + iso(w.window_end_ms)), el("td", {}, w.asset),
          el("td", {}, iso(w.emitted_at * 1000)), runs));
      }
      sec.append(el("h3", {}, "Windows emitted (latest " + s.windows.length + ")"), wt);
    }
    return sec;
  }));
  if (!data.streams.length) root.append(el("p", {}, "No open waits on a stream."));
  const focused = root.querySelector("section.focus");
  if (focused && !scrolled) { focused.scrollIntoView(); scrolled = true; }
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
