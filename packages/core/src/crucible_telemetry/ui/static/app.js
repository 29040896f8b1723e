/* crucible dashboard: a single page over the JSON API (see the README, "Dashboard"). No build step. */
"use strict";
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563", "#65a30d", "#9333ea"];
const state = {
  runs: [], differ: [], metrics: [], byId: {}, selected: new Set(JSON.parse(localStorage.getItem("ct.sel") || "[]")),
  sort: { col: "started_at", asc: false }, lastId: null, es: null, series: {}, chart: null, failed: [],
};
window.__ct = state; // the browser tests read what is drawn here

async function api(path) {
  const r = await fetch(path);
  const body = await r.json();
  if (!r.ok) { state.failed.push(path); throw new Error(body.error || r.statusText); }
  return body;
}
const num = (v) => typeof v === "number";
function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  if (!num(v)) return JSON.stringify(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : v.toPrecision(4).replace(/\.?0+$/, "");
}
const label = (r) => r.name + (state.differ.length ? " (" + state.differ.map((k) => k + "=" + fmt(r.params[k])).join(", ") + ")" : "");

/* ---------- Runs page ---------- */
async function loadRuns() {
  const d = await api("/api/runs");
  state.runs = d.runs; state.differ = d.differ; state.metrics = d.metrics;
  state.byId = Object.fromEntries(d.runs.map((r) => [r.id, r]));
  const gb = $("#groupby"), keep = gb.value;
  gb.innerHTML = '<option value="">none</option><option value="condition">condition</option>' +
    d.params.map((p) => `<option value="params.${esc(p)}">${esc(p)}</option>`).join("");
  gb.value = keep;
  const bb = $("#bandby"), keepb = bb.value;
  bb.innerHTML = '<option value="condition">condition</option>' + d.differ.map((p) => `<option>${esc(p)}</option>`).join("");
  bb.value = keepb || "condition";
  renderRuns(); fillMetricPicker();
}
function cell(r, col) {
  if (col.startsWith("params.")) return r.params[col.slice(7)];
  if (col.startsWith("metrics.")) return r.metrics[col.slice(8)];
  return r[col];
}
function matches(r, f) {
  if (!f) return true;
  return f.split(/\s+/).every((t) => {
    const m = t.match(/^([\w.]+)(=|>|<)(.*)$/);
    if (!m) return JSON.stringify([r.name, r.id, r.condition, r.tags, r.status, r.params]).toLowerCase().includes(t.toLowerCase());
    const v = cell(r, m[1]) ?? cell(r, "params." + m[1]) ?? cell(r, "metrics." + m[1]);
    if (m[2] === "=") return String(v) === m[3];
    return m[2] === ">" ? Number(v) > Number(m[3]) : Number(v) < Number(m[3]);
  });
}
function columns() {
  const mcols = state.metrics.slice(0, 8).map((m) => "metrics." + m);
  return ["name", "status", "condition", "tags", ...state.differ.map((p) => "params." + p), ...mcols, "duration_s", "started_at"];
}
function renderRuns() {
  const cols = columns(), t0 = performance.now();
  const { col, asc } = state.sort;
  let rows = state.runs.filter((r) => matches(r, $("#filter").value.trim()));
  rows.sort((a, b) => {
    const x = cell(a, col), y = cell(b, col);
    if (x == null) return 1; if (y == null) return -1;
    const c = num(x) && num(y) ? x - y : String(x).localeCompare(String(y));
    return asc ? c : -c;
  });
  const head = '<tr><th data-col=""><input type="checkbox" id="selall"></th>' + cols.map((c) =>
    `<th data-col="${esc(c)}" class="${c === col ? "sorted" + (asc ? " asc" : "") : ""}">${esc(c.replace(/^(params|metrics)\./, ""))}</th>`).join("") + "</tr>";
  $("#runs thead").innerHTML = head;
  const gb = $("#groupby").value, html = [];
  let groups = [["", rows]];
  if (gb) {
    const m = new Map();
    rows.forEach((r) => { const k = fmt(cell(r, gb)) || "(none)"; if (!m.has(k)) m.set(k, []); m.get(k).push(r); });
    groups = [...m.entries()];
  }
  for (const [g, rs] of groups) {
    if (gb) html.push(`<tr class="group"><td colspan="${cols.length + 1}">${esc(gb.replace("params.", ""))} = ${esc(g)} <span class="muted">(${rs.length})</span></td></tr>`);
    for (const r of rs) {
      const sel = state.selected.has(r.id);
      html.push(`<tr data-id="${esc(r.id)}" class="${sel ? "sel" : ""}"><td><input type="checkbox" ${sel ? "checked" : ""}></td>` + cols.map((c) => {
        const v = cell(r, c);
        if (c === "status") return `<td><span class="badge ${esc(v)}">${esc(v)}</span></td>`;
        if (c === "tags") return `<td>${(v || []).map((t) => `<span class="tag">${esc(t)}</span>`).join("")}</td>`;
        if (c === "started_at") return `<td class="muted">${esc(String(v || "").slice(0, 19).replace("T", " "))}</td>`;
        return `<td class="${num(v) ? "num" : ""}" title="${esc(fmt(v))}">${esc(fmt(c === "duration_s" && num(v) ? Math.round(v * 10) / 10 : v))}</td>`;
      }).join("") + "</tr>");
    }
  }
  $("#runs tbody").innerHTML = html.join("");
  $("#runcount").textContent = `${rows.length} of ${state.runs.length} runs`;
  state.renderMs = performance.now() - t0;
  updateSelInfo();
}
function updateSelInfo() {
  localStorage.setItem("ct.sel", JSON.stringify([...state.selected]));
  $("#selinfo").textContent = state.selected.size ? `${state.selected.size} selected` : "";
}
$("#runs").addEventListener("click", (e) => {
  const th = e.target.closest("th");
  if (th && th.dataset.col) {
    const c = th.dataset.col;
    state.sort = { col: c, asc: state.sort.col === c ? !state.sort.asc : true };
    return renderRuns();
  }
  if (e.target.id === "selall") {
    document.querySelectorAll("#runs tbody tr[data-id]").forEach((tr) => e.target.checked ? state.selected.add(tr.dataset.id) : state.selected.delete(tr.dataset.id));
    return renderRuns();
  }
  const tr = e.target.closest("tr[data-id]");
  if (!tr) return;
  if (e.target.tagName !== "INPUT") { state.selected.clear(); state.selected.add(tr.dataset.id); location.hash = "#/charts"; return; }
  e.target.checked ? state.selected.add(tr.dataset.id) : state.selected.delete(tr.dataset.id);
  tr.classList.toggle("sel", e.target.checked); updateSelInfo(); openStream();
});
$("#filter").addEventListener("input", renderRuns);
$("#groupby").addEventListener("change", renderRuns);
$("#clearsel").addEventListener("click", () => { state.selected.clear(); renderRuns(); openStream(); });

/* ---------- Charts page ---------- */
function fillMetricPicker() {
  const m = $("#metric"), keep = m.value || localStorage.getItem("ct.metric");
  m.innerHTML = state.metrics.map((x) => `<option>${esc(x)}</option>`).join("");
  if (keep && state.metrics.includes(keep)) m.value = keep;
}
const selectedIds = () => [...state.selected].filter((id) => state.byId[id]);
let seriesTimer = null;
function refreshSoon(ms) { clearTimeout(seriesTimer); seriesTimer = setTimeout(loadSeries, ms); }
async function loadSeries() {
  const ids = selectedIds(), name = $("#metric").value;
  if (page() !== "charts") return;
  updateSelInfo();
  if (!ids.length || !name) { $("#chart").innerHTML = '<p class="muted">Select runs on the Runs page.</p>'; return; }
  localStorage.setItem("ct.metric", name);
  const w = Math.max(300, $("#chart").clientWidth - 20), weight = Number($("#smooth").value);
  const q = new URLSearchParams({ name, x: $("#xaxis").value, max_points: String(w * 2) });
  ids.forEach((id) => q.append("run", id));
  if (weight > 0) { q.set("smooth", "ema"); q.set("weight", String(weight)); }
  if ($("#bands").checked) q.set("group", $("#bandby").value);
  let d;
  const gen = (state.gen = (state.gen || 0) + 1);
  try { d = await api("/api/series?" + q); } catch (e) { $("#chart").innerHTML = `<p class="warn">${esc(e.message)}</p>`; return; }
  if (gen !== state.gen) return; // a newer request is on its way: answers never land out of order
  state.series = {}; state.view = d;
  d.series.forEach((s) => { state.series[s.run] = s; });
  draw(); loadCompare(); loadDetail();
}
function draw() {
  const d = state.view; if (!d) return;
  const bands = d.groups || null, tables = [], series = [{}], bandDefs = [];
  const logy = $("#logy").checked;
  if (bands) {
    bands.forEach((g, i) => {
      const c = COLORS[i % COLORS.length];
      tables.push([g.x, g.mean], [g.x, g.mean.map((m, j) => m - g.std[j])], [g.x, g.mean.map((m, j) => m + g.std[j])]);
      const base = series.length;
      series.push({ label: `${g.label} mean (n=${g.runs.length})`, stroke: c, width: 2, spanGaps: true },
        { label: `${g.label} -sd`, stroke: c + "55", width: 1, spanGaps: true }, { label: `${g.label} +sd`, stroke: c + "55", width: 1, spanGaps: true });
      bandDefs.push({ series: [base + 2, base + 1], fill: c + "22" });
    });
  } else {
    d.series.forEach((s, i) => {
      tables.push([s.x, s.y]);
      const r = state.byId[s.run] || { name: s.run, params: {} };
      series.push({ label: label(r), stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: s.x.length < 60 } });
    });
  }
  const data = tables.length ? uPlot.join(tables) : [[]];
  if (logy) for (let i = 1; i < data.length; i++) data[i] = data[i].map((v) => (v > 0 ? v : null));
  const el = $("#chart"); el.innerHTML = "";
  const opts = {
    width: Math.max(300, el.clientWidth - 12), height: 380, series, bands: bandDefs,
    scales: { x: { time: d.x === "time" }, y: { distr: logy ? 3 : 1 } },
    axes: [{ label: d.x === "relative" ? "seconds since start" : d.x === "time" ? "" : d.x }, { label: d.name }],
    legend: { live: true }, cursor: { drag: { x: true, y: false } },
  };
  state.chart = new uPlot(opts, data, el);
  const notes = [];
  d.series.forEach((s) => { if (s.bucket_width) notes.push(`${state.byId[s.run]?.name || s.run}: ${s.count} points shown as ${s.x.length} (per-bucket first/last/min/max, bucket ${s.bucket_width})`); });
  if (d.method) notes.push("smoothing: " + d.method);
  $("#chartnote").textContent = notes.join(" · ");
  const nf = d.series.filter((s) => s.nonfinite.length).map((s) => `${state.byId[s.run]?.name}: ${s.nonfinite.length} non-finite (${s.nonfinite.slice(0, 5).map(([x, k]) => k + " at " + fmt(x)).join(", ")})`);
  $("#nonfinite").textContent = nf.join(" · ");
}
async function loadCompare() {
  const ids = selectedIds(), el = $("#verdict");
  if (ids.length < 2) { el.textContent = "select two or more runs to compare"; return; }
  const q = new URLSearchParams({ metric: $("#metric").value + "." + $("#cmpstat").value });
  ids.forEach((id) => q.append("run", id));
  if ($("#bands").checked && $("#bandby").value === "condition") q.set("by", "condition");
  const gen = (state.cgen = (state.cgen || 0) + 1);
  try {
    const c = await api("/api/compare?" + q);
    if (gen !== state.cgen) return;
    el.textContent = c.verdict + (c.notes.length ? "\n" + c.notes.join("\n") : "") + "\n\n" +
      c.groups.map((g) => `${g.label}: n=${g.n} (${g.unit}s) mean=${fmt(g.mean)}`).join("\n");
  } catch (e) { if (gen === state.cgen) el.textContent = e.message; }
}
function kv(obj) {
  return '<table class="kv">' + Object.entries(obj || {}).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(fmt(v))}</td></tr>`).join("") + "</table>";
}
async function loadDetail() {
  const ids = selectedIds(), sel = $("#detailrun"), keep = sel.value;
  sel.innerHTML = ids.map((id) => `<option value="${esc(id)}">${esc(state.byId[id].name)}</option>`).join("");
  if (ids.includes(keep)) sel.value = keep;
  if (!sel.value) { $("#detail").innerHTML = ""; return; }
  const gen = (state.dgen = (state.dgen || 0) + 1);
  const d = await api("/api/runs/" + encodeURIComponent(sel.value)), r = d.run, env = r.environment || {};
  if (gen !== state.dgen) return;
  $("#detail").innerHTML =
    kv({ id: r.experiment_id, status: r.status, condition: r.condition, hypothesis: r.hypothesis, notes: r.notes, started: r.started_at, host: r.host }) +
    "<h3>Params</h3>" + kv(r.params) +
    "<h3>Environment</h3>" + kv({ python: env.python, platform: env.platform, git: env.git ? env.git.commit : null, ...(env.packages || {}) }) +
    `<h3>Checkpoints (${d.checkpoints.length})</h3>` + kv(Object.fromEntries(d.checkpoints.map((c, i) => [c.ts.slice(11, 19) + " #" + i, (c.metadata || "").slice(0, 120)]))) +
    "<h3>Recent events</h3><div class=\"scroll\"><table><tr><th>ts</th><th>event</th><th>step</th><th>measurements</th></tr>" +
    d.events.slice(0, 100).map((e) => `<tr><td class="muted">${esc(e.ts.slice(11, 23))}</td><td>${esc(e.event)}</td><td class="num">${esc(fmt(e.global_step))}</td><td>${esc(Object.entries(e.measurements).map(([k, v]) => k + "=" + fmt(v)).join(" "))}</td></tr>`).join("") + "</table></div>";
}
["#metric", "#xaxis", "#bands", "#bandby"].forEach((s) => $(s).addEventListener("change", () => loadSeries()));
$("#logy").addEventListener("change", draw);
$("#cmpstat").addEventListener("change", loadCompare);
$("#detailrun").addEventListener("change", loadDetail);
$("#smooth").addEventListener("input", () => { const v = Number($("#smooth").value); $("#smoothval").textContent = v ? v.toFixed(2) + " (time-aware EMA)" : "off"; refreshSoon(150); });

/* live points: appended when the drawn curve is raw; otherwise the curve is read again */
function onRows(data) {
  const d = state.view;
  if (Object.keys(data.counts).some((id) => !state.byId[id])) loadRunsSoon();
  else loadRunsSoon(2000);
  if (!d || page() !== "charts") return;
  let redraw = false, refetch = false;
  const key = d.name.includes(":") ? d.name.split(":").pop() : d.name;
  for (const s of d.series) {
    const rows = s.source === "metric" ? data.metrics.filter((r) => r.run === s.run && r.name === key).map((r) => [r, r.value])
      : data.events.filter((r) => r.run === s.run && r.name === s.source && key in r.measurements).map((r) => [r, r.measurements[key]]);
    if (!rows.length) continue;
    if (s.bucket_width || d.smooth !== "none" || d.groups || (d.x !== "step" && d.x !== "epoch" && d.x !== "time")) { refetch = true; continue; }
    for (const [r, v] of rows) {
      const x = d.x === "time" ? r.ts / 1e6 : r[d.x];
      if (x == null) continue;
      s.count += 1;
      if (!num(v)) { s.nonfinite.push([x, v]); continue; }
      if (s.x.length && x < s.x[s.x.length - 1]) { refetch = true; break; }
      s.x.push(x); s.y.push(v); redraw = true;
    }
  }
  if (refetch) refreshSoon(500); else if (redraw) draw();
}
let runsTimer = null;
function loadRunsSoon(ms = 300) { if (!runsTimer) runsTimer = setTimeout(() => { runsTimer = null; loadRuns().catch(() => {}); }, ms); }

function openStream() {
  if (state.es) state.es.close();
  if (document.hidden) { state.es = null; return; }
  const q = new URLSearchParams();
  selectedIds().forEach((id) => q.append("run", id));
  if (state.lastId) q.set("cursor", state.lastId);
  const es = new EventSource("/api/stream?" + q);
  state.es = es;
  const live = $("#live");
  es.onopen = () => { live.className = "live on"; live.textContent = "● live"; };
  es.onerror = () => { live.className = "live off"; live.textContent = "● reconnecting"; };
  es.addEventListener("rows", (e) => { state.lastId = e.lastEventId; onRows(JSON.parse(e.data)); });
  es.addEventListener("cursor", (e) => { state.lastId = e.lastEventId; });
  es.addEventListener("runs", () => loadRunsSoon());
}
document.addEventListener("visibilitychange", () => {
  if (document.hidden) { if (state.es) state.es.close(); state.es = null; $("#live").className = "live off"; $("#live").textContent = "● paused"; }
  else openStream();
});

/* ---------- LLM and Metrics pages ---------- */
function bars(el, edges, counts, title) {
  const x = edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
  new uPlot({ width: 420, height: 180, title, series: [{}, { label: "requests", stroke: "#2563eb", fill: "#2563eb33", points: { show: false }, paths: uPlot.paths.bars({ size: [0.9] }) }],
    scales: { x: { time: false } }, legend: { show: false } }, [x, counts], el);
}
async function loadLlm() {
  const q = new URLSearchParams(); selectedIds().forEach((id) => q.append("run", id));
  const d = await api("/api/llm?" + q), el = $("#llm");
  const groups = Object.entries(d.groups);
  if (!groups.length) { el.innerHTML = '<p class="muted">No req_llm.request events in ' + (state.selected.size ? "the selected runs" : "the store") + ".</p>"; return; }
  el.innerHTML = `<p class="muted">${state.selected.size ? "selected runs" : "all runs"} · errors by kind: ${esc(Object.entries(d.errors_by_kind).map(([k, n]) => k + " " + n).join(", ") || "none")}</p>`;
  for (const [name, g] of groups) {
    const card = document.createElement("div"); card.className = "card"; el.appendChild(card);
    const p = (s) => (s.n ? `p50 ${fmt(s.p50)} · p95 ${fmt(s.p95)} · p99 ${fmt(s.p99)} ms` : "none");
    card.innerHTML = `<h4>${esc(name)}</h4><div class="small">${g.requests} requests, ${g.errors} errors · latency ${p(g.latency)} · TTFT ${p(g.ttft)}</div><div class="cards"></div>`;
    const row = card.querySelector(".cards");
    for (const [k, t] of [["latency", "latency (ms)"], ["ttft", "time to first token (ms)"]]) if (g[k].n) { const c = document.createElement("div"); row.appendChild(c); bars(c, g[k].edges, g[k].counts, t); }
    const c = document.createElement("div"); row.appendChild(c);
    new uPlot({ width: 420, height: 180, title: "cumulative tokens and cost", series: [{}, { label: "tokens", stroke: "#059669", scale: "tok" }, { label: "USD", stroke: "#d97706", scale: "usd" }],
      axes: [{}, { scale: "tok", size: 64, values: (u, vs) => vs.map(fmt) }, { scale: "usd", side: 1, size: 64, grid: { show: false }, values: (u, vs) => vs.map((v) => "$" + fmt(v)) }] },
      [g.t, g.cumulative_tokens, g.cumulative_cost_usd], c);
  }
}
async function loadMetrics() {
  const d = await api("/api/metrics"), el = $("#metrics");
  if (!d.rollups.length) { el.innerHTML = '<p class="muted">No counters, gauges or histograms recorded in the last 24 h.</p>'; return; }
  const cols = ["metric", "kind", "tags", "count", "sum", "mean", "min", "max", "last", "p50", "p95", "p99"];
  el.innerHTML = '<div class="tablewrap" style="max-height:320px"><table><tr>' + cols.map((c) => `<th>${c}</th>`).join("") + "</tr>" +
    d.rollups.map((r) => "<tr>" + cols.map((c) => `<td class="${num(r[c]) ? "num" : ""}">${esc(fmt(r[c]))}</td>`).join("") + "</tr>").join("") +
    `</table></div><p class="muted small">per minute: ${esc(d.series_aggregation)}</p><div class="cards" id="mcharts"></div>`;
  for (const [name, s] of Object.entries(d.series)) {
    const c = document.createElement("div"); c.className = "card"; $("#mcharts").appendChild(c);
    if (s.t.length < 2) { // one minute so far: the value, not a chart spanning years
      c.innerHTML = `<h4>${esc(name)} (${esc(s.kind)})</h4><div class="muted">${esc(fmt(s.v[0]))} in the minute of ${esc(new Date(s.t[0] * 1000).toLocaleTimeString())}; the series draws from the second minute</div>`;
      continue;
    }
    new uPlot({ width: 380, height: 160, title: `${name} (${s.kind})`, series: [{}, { label: name, stroke: "#2563eb", points: { size: 6 } }],
      axes: [{}, { size: 56, values: (u, vs) => vs.map(fmt) }], legend: { show: false } }, [s.t, s.v], c);
  }
}

/* ---------- routing ---------- */
const page = () => (location.hash.replace(/^#\//, "").split("?")[0] || "runs");
function route() {
  const p = page();
  document.querySelectorAll(".page").forEach((s) => s.classList.toggle("active", s.id === "page-" + p));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === p));
  if (p === "charts") loadSeries();
  if (p === "llm") loadLlm().catch((e) => { $("#llm").textContent = e.message; });
  if (p === "metrics") loadMetrics().catch((e) => { $("#metrics").textContent = e.message; });
  openStream();
}
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => {
  if (page() !== "charts") return;
  if (state.chart) state.chart.setSize({ width: Math.max(300, $("#chart").clientWidth - 12), height: 380 });
  refreshSoon(300); // and read the curve again for the new pixel width
});
loadRuns().then(() => { state.ready = true; route(); }).catch((e) => { document.body.insertAdjacentHTML("beforeend", `<p class="warn">${esc(e.message)}</p>`); });
