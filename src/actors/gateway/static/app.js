// fleetcast dashboard: plain JavaScript, no build step. It loads the fleet once from the
// gateway's /api/v1, then applies push events (Server-Sent Events at /api/v1/events): it never
// polls. Views: overview (KPIs, top risks, heatmap), heatmap, servers, one server (forecast
// bands over recent actuals, drivers, attention, risk factors, alerts), alerts (active,
// history, CSV export), model. window.fleetcast exposes render times and counters for tests.
"use strict";

const LEVELS = ["healthy", "watch", "warning", "critical"];
const state = {
  key: localStorage.getItem("fleetcast.key") || "",
  summary: null,
  servers: new Map(),      // name -> row (see /api/v1/servers)
  alerts: new Map(),       // id -> active alert
  server: null,            // the open server page's detail
  connected: false,
  scenario: "",
};
const fleetcast = (window.fleetcast = {
  renderMs: 0, renders: 0, events: 0, loads: 0, charts: 0, bands: 0, origin: 0, lastEvent: "", errors: [],
});

const $ = (selector) => document.querySelector(selector);
const esc = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (value, digits = 1) => (value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits));
const pct = (value) => (value === null || value === undefined ? "–" : (100 * value).toFixed(0) + "%");
const levelOf = (score) => {
  const scale = state.summary?.scale || { watch: 20, warning: 40, critical: 70 };
  if (score === null || score === undefined) return "healthy";
  return score >= scale.critical ? "critical" : score >= scale.warning ? "warning" : score >= scale.watch ? "watch" : "healthy";
};
const heat = (score) => (score === null || score === undefined ? "" : `hsl(${Math.round(120 - 1.2 * Math.min(100, Math.max(0, score)))},70%,${score >= 70 ? 50 : 42}%)`);
const badge = (level) => `<span class="lvl ${esc(level)}">${esc(level)}</span>`;
const time = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–");

// ---- HTTP ----------------------------------------------------------------------------------
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers["X-API-Key"] = state.key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    await askKey();
    return api(path, options);
  }
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not json */ }
    throw new Error(`${path}: ${message}`);
  }
  return response;
}
const getJson = async (path) => (await api(path)).json();

function askKey() {
  return new Promise((resolve) => {
    const dialog = $("#key-dialog");
    if (dialog.open) { dialog.addEventListener("close", resolve, { once: true }); return; }
    dialog.addEventListener("close", () => {
      state.key = $("#key-input").value.trim();
      localStorage.setItem("fleetcast.key", state.key);
      resolve();
    }, { once: true });
    dialog.showModal();
  });
}

// ---- loading and push ------------------------------------------------------------------------
async function loadAll() {
  const [summary, servers, alerts] = await Promise.all([
    getJson("/api/v1/summary?heatmap=false"),
    getJson("/api/v1/servers?sort=name"),
    getJson("/api/v1/alerts?state=active"),
  ]);
  state.summary = summary;
  state.servers = new Map(servers.servers.map((row) => [row.server, row]));
  state.alerts = new Map(alerts.alerts.map((alert) => [alert.id, alert]));
  fleetcast.loads += 1;
  scheduleRender(true);
}

async function refreshSummary() {
  state.summary = await getJson("/api/v1/summary");
  scheduleRender();
}

function applyRisk(servers) {
  for (const update of servers) {
    const row = state.servers.get(update.server) || { server: update.server, open_alerts: 0 };
    Object.assign(row, { profile: update.profile, score: update.score, level: update.level, sample_ms: update.sample_ms, forecast_status: update.forecast_status });
    state.servers.set(update.server, row);
    updateCell(row);
  }
}

function applyAlert(event) {
  const row = state.servers.get(event.server);
  if (event.action === "resolve") {
    state.alerts.delete(event.id);
  } else {
    state.alerts.set(event.id, {
      id: event.id, server: event.server, profile: event.profile, metric: event.subject, severity: event.severity,
      predicted_value: event.value, threshold: null, minutes_ahead: null, reason: event.reason, opened_ms: event.opened_ms, at_ms: event.at_ms, action: event.action,
    });
  }
  if (row) row.open_alerts = [...state.alerts.values()].filter((a) => a.server === event.server).length;
  toast(`${event.action} ${event.severity}: ${event.server} ${event.subject} — ${event.reason}`, event.action === "resolve" ? "healthy" : event.severity);
}

function handleEvent(name, data) {
  fleetcast.events += 1;
  fleetcast.lastEvent = name;
  switch (name) {
    case "hello": loadAll().catch(report); return; // subscribed first, then loaded: no gap
    case "resync": loadAll().catch(report); return;
    case "risk": applyRisk(data.servers); scheduleRender(); return;
    case "alert": applyAlert(data); scheduleRender(); return;
    case "summary":
      refreshSummary().catch(report);
      // The scenario may have been switched elsewhere (`fleetcast scenario`): ask along.
      getJson("/api/v1/scenario").then((reply) => showScenario(reply.new_scenario)).catch(() => {});
      return;
    case "status":
      if (data.stage === "window_keeper") showWarmup(data.warmup_pct, data.servers_ready, data.servers);
      return;
    case "forecast":
      if (state.server && data.servers.some((s) => s.server === state.server.server)) loadServer(state.server.server).catch(report);
      return;
  }
}

// Server-Sent Events read through fetch, so the API key can travel as a header.
async function connect() {
  let backoff = 500;
  for (;;) {
    try {
      const response = await api("/api/v1/events", { headers: { Accept: "text/event-stream" } });
      setConnected(true);
      backoff = 500;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message", data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) {
            try { handleEvent(name, JSON.parse(data)); } catch (error) { report(error); }
          }
        }
      }
    } catch (error) {
      report(error);
    }
    setConnected(false);
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 10000);
  }
}

function setConnected(on) {
  state.connected = on;
  const conn = $("#conn");
  conn.textContent = on ? "live" : "reconnecting";
  conn.className = "conn " + (on ? "on" : "off");
}

function showWarmup(percent, ready, servers) {
  $("#warmup").textContent = percent === undefined ? "" : `warm-up ${fmt(percent, 0)}% (${ready}/${servers} ready)`;
}

function report(error) {
  fleetcast.errors.push(String(error));
  console.warn(error);
}

function toast(text, level) {
  const box = document.createElement("div");
  box.className = "toast " + (level || "");
  box.textContent = text;
  $("#toasts").prepend(box);
  setTimeout(() => box.remove(), 8000);
  while ($("#toasts").children.length > 5) $("#toasts").lastChild.remove();
}

// ---- rendering -----------------------------------------------------------------------------
let queued = false, forced = false;
// Draws the current view on the next frame; `force` redraws views that otherwise only update
// their live parts (a server's charts, the alert history).
function scheduleRender(force) {
  forced = forced || Boolean(force);
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => { const force = forced; queued = false; forced = false; render(force); });
}

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [view, ...rest] = hash.split("/");
  return { view: view || "overview", arg: decodeURIComponent(rest.join("/")) };
}

function render(force) {
  const started = performance.now();
  const { view, arg } = route();
  const main = $("#view");
  const changed = force || main.dataset.view !== view + "/" + arg;
  main.dataset.view = view + "/" + arg;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === view || (view === "server" && link.dataset.view === "servers"));
  const alertCount = $("#alert-count");
  alertCount.textContent = state.alerts.size;
  alertCount.classList.toggle("hot", [...state.alerts.values()].some((a) => a.severity === "critical"));
  if (view === "overview") main.innerHTML = overviewHtml();
  else if (view === "heatmap") main.innerHTML = `<h2>Risk by profile</h2>${heatmapHtml()}`;
  else if (view === "servers") main.innerHTML = serversHtml();
  else if (view === "alerts") { if (changed) renderAlerts(main); else activeAlertsRows(); }
  else if (view === "model") { if (changed) renderModel(main); }
  else if (view === "server") { if (changed) renderServer(main, arg); }
  else main.innerHTML = `<p class="muted">no view ${esc(view)}</p>`;
  if (view === "overview" || view === "heatmap") indexCells();
  fleetcast.renderMs = performance.now() - started;
  fleetcast.renders += 1;
  $("#render-time").textContent = `render ${fmt(fleetcast.renderMs, 0)} ms`;
}

function counts() {
  const result = { healthy: 0, watch: 0, warning: 0, critical: 0 };
  for (const row of state.servers.values()) result[levelOf(row.score)] += 1;
  return result;
}

function overviewHtml() {
  const summary = state.summary || {};
  const level = counts();
  const incident = summary.incident || {};
  const warmup = summary.warmup;
  if (warmup) showWarmup(warmup.percent, warmup.servers_ready, warmup.servers);
  const kpi = (value, label, cls = "", id = "") => `<div class="kpi ${cls}"${id ? ` id="${id}"` : ""}><div class="v">${value}</div><div class="k">${label}</div></div>`;
  const top = [...state.servers.values()].filter((r) => r.score !== null && r.score !== undefined)
    .sort((a, b) => b.score - a.score || a.server.localeCompare(b.server)).slice(0, 10);
  return `
    <div class="kpis">
      ${kpi(state.servers.size, "servers", "", "kpi-servers")}
      ${LEVELS.slice().reverse().map((l) => kpi(level[l], l, l, "kpi-" + l)).join("")}
      ${kpi(pct(incident.prob_30m), "incident probability, 30 min", "", "kpi-prob30")}
      ${kpi(pct(incident.prob_8h), "incident probability, 8 h", "", "kpi-prob8h")}
      ${kpi(esc(incident.fleet_health || "unknown"), "fleet health", incident.fleet_health === "healthy" ? "healthy" : incident.fleet_health || "", "kpi-health")}
      ${kpi(warmup ? fmt(warmup.percent, 0) + "%" : "–", "warm-up", "", "kpi-warmup")}
      ${kpi(state.alerts.size, "open alerts", state.alerts.size ? "warning" : "", "kpi-alerts")}
    </div>
    <div class="grid2">
      <div><h2>Top risks</h2>
        <table id="top-risks"><tr><th>server</th><th>profile</th><th class="num">risk</th><th>level</th></tr>
        ${top.map((r) => `<tr><td><a href="#/server/${encodeURIComponent(r.server)}">${esc(r.server)}</a></td><td>${esc(r.profile)}</td><td class="num">${fmt(r.score)}</td><td>${badge(levelOf(r.score))}</td></tr>`).join("") || `<tr><td colspan="4" class="muted">no risk scores yet</td></tr>`}
        </table></div>
      <div><h2>Risk heatmap, by profile</h2>${heatmapHtml()}</div>
    </div>`;
}

function heatmapHtml() {
  const groups = new Map();
  for (const row of state.servers.values()) {
    if (!groups.has(row.profile)) groups.set(row.profile, []);
    groups.get(row.profile).push(row);
  }
  const parts = [];
  for (const profile of [...groups.keys()].sort()) {
    const rows = groups.get(profile).sort((a, b) => a.server.localeCompare(b.server));
    const cells = rows.map((r) => {
      const level = levelOf(r.score);
      const hasScore = r.score !== null && r.score !== undefined;
      return `<a class="cell${hasScore ? "" : " none"}" data-server="${esc(r.server)}" data-level="${level}" href="#/server/${encodeURIComponent(r.server)}" title="${esc(r.server)}: ${hasScore ? fmt(r.score) : "no score"}" style="background:${heat(r.score)}"></a>`;
    }).join("");
    parts.push(`<div class="heat-group"><div class="name">${esc(profile)} (${rows.length})</div><div class="cells">${cells}</div></div>`);
  }
  return `<div id="heatmap">${parts.join("") || `<p class="muted">no servers yet</p>`}</div>`;
}

let cellIndex = new Map();
function indexCells() {
  cellIndex = new Map();
  for (const cell of document.querySelectorAll(".cell[data-server]")) cellIndex.set(cell.dataset.server, cell);
}
function updateCell(row) {
  const cell = cellIndex.get(row.server);
  if (!cell) return;
  cell.style.background = heat(row.score);
  cell.dataset.level = levelOf(row.score);
  cell.classList.toggle("none", row.score === null || row.score === undefined);
  cell.title = `${row.server}: ${fmt(row.score)}`;
}

function serversHtml() {
  const rows = [...state.servers.values()].sort((a, b) => (b.score ?? -1) - (a.score ?? -1) || a.server.localeCompare(b.server));
  return `<h2>Servers by risk</h2>
    <table id="servers"><tr><th>server</th><th>profile</th><th class="num">risk</th><th>level</th><th>forecast</th><th class="num">open alerts</th><th>last sample</th></tr>
    ${rows.map((r) => `<tr data-server="${esc(r.server)}"><td><a href="#/server/${encodeURIComponent(r.server)}">${esc(r.server)}</a></td><td>${esc(r.profile)}</td><td class="num">${fmt(r.score)}</td><td>${badge(levelOf(r.score))}</td><td>${esc(r.forecast_status || "–")}</td><td class="num">${r.open_alerts || 0}</td><td>${time(r.sample_ms)}</td></tr>`).join("")}
    </table>`;
}

// ---- one server ------------------------------------------------------------------------------
async function loadServer(name) {
  state.server = await getJson(`/api/v1/servers/${encodeURIComponent(name)}`);
  if (route().view === "server" && route().arg === name) drawServer($("#view"));
}

function renderServer(main, name) {
  if (!state.server || state.server.server !== name) {
    main.innerHTML = `<p class="muted">loading ${esc(name)}…</p>`;
    loadServer(name).catch((error) => { main.innerHTML = `<p class="muted">${esc(error.message)}</p>`; });
    return;
  }
  drawServer(main);
}

function drawServer(main) {
  const started = performance.now();
  const server = state.server;
  const risk = server.risk;
  const forecast = server.forecast;
  const drivers = (forecast?.drivers || []).map((d) => `<tr><td>${esc(d.variable)}</td><td><div class="bar" style="width:${Math.round(100 * d.weight)}%"></div></td><td class="num">${fmt(100 * d.weight, 0)}%</td></tr>`).join("");
  const factors = (risk?.factors || []).map((f) => `<tr><td>${esc(f.metric)} (${esc(f.source)})</td><td class="num">${fmt(f.value)}</td><td class="num">+${fmt(f.points, 0)}</td></tr>`).join("");
  const alerts = (server.alerts || []).map((a) => `<tr><td>${badge(a.severity)}</td><td>${esc(a.subject)}</td><td>${esc(a.reason)}</td><td>${time(a.opened_ms)}</td></tr>`).join("");
  const attention = forecast?.attention;
  fleetcast.origin = forecast?.origin_s || 0;
  main.innerHTML = `
    <h2><a href="#/servers">servers</a> / ${esc(server.server)}</h2>
    <div class="kpis">
      <div class="kpi ${esc(server.level)}"><div class="v" id="server-score">${fmt(risk?.score)}</div><div class="k">risk (${esc(server.level)})</div></div>
      <div class="kpi"><div class="v">${fmt(risk?.current, 0)}</div><div class="k">current points</div></div>
      <div class="kpi"><div class="v">${fmt(risk?.predicted, 0)}</div><div class="k">predicted points</div></div>
      <div class="kpi"><div class="v">${esc(server.profile_display)}</div><div class="k">profile</div></div>
      <div class="kpi"><div class="v">${esc(forecast ? forecast.model + " " + forecast.model_version : "–")}</div><div class="k">model</div></div>
      <div class="kpi"><div class="v">${time(server.latest_sample?.ts_ms).slice(11)}</div><div class="k">last sample ${time(server.latest_sample?.ts_ms).slice(0, 10)}</div></div>
    </div>
    <div class="grid2">
      <div>
        <h2>Risk factors</h2><table class="factors">${factors || `<tr><td class="muted">none</td></tr>`}</table>
        <h2>Open alerts</h2><table>${alerts || `<tr><td class="muted">none</td></tr>`}</table>
        <h2>What the model looked at</h2><table id="drivers">${drivers || `<tr><td class="muted">no forecast yet</td></tr>`}</table>
        <p class="muted">${attention ? `attention: ${fmt(100 * attention.recent_share, 0)}% on the last quarter of the day, ${fmt(100 * attention.oldest_share, 0)}% on the oldest; most at ${attention.top_hours_ago.map((h) => fmt(h, 1) + " h").join(", ")} ago` : ""}</p>
      </div>
      <div><h2>Forecast: p10–p90 band, p50, recent actuals</h2><div class="charts" id="charts"></div></div>
    </div>`;
  drawCharts(server);
  fleetcast.renderMs = performance.now() - started;
  $("#render-time").textContent = `render ${fmt(fleetcast.renderMs, 0)} ms`;
}

function drawCharts(server) {
  const box = $("#charts");
  const forecast = server.forecast;
  const recent = server.recent || { step_s: [], metrics: {} };
  const names = new Set([...Object.keys(forecast?.metrics || {}), ...Object.keys(recent.metrics || {})]);
  fleetcast.charts = 0;
  fleetcast.bands = 0;
  for (const metric of [...names].sort()) {
    const series = forecast?.metrics?.[metric];
    const actual = recent.metrics?.[metric] || [];
    // One sorted time axis for both (the latest forecast may start before the newest actuals
    // when the predictor lags); every series is placed on it, null where it has no value.
    const xs = [...new Set([...recent.step_s, ...(series ? forecast.step_s : [])])].sort((a, b) => a - b);
    const slot = new Map(xs.map((x, i) => [x, i]));
    const column = (times, values) => {
      const out = new Array(xs.length).fill(null);
      times.forEach((t, i) => { out[slot.get(t)] = values[i] ?? null; });
      return out;
    };
    const data = [xs, column(recent.step_s, actual)];
    const seriesOpts = [{}, { label: "actual", stroke: "#d8dee6", width: 1.5, spanGaps: false }];
    if (series) {
      data.push(column(forecast.step_s, series.p90), column(forecast.step_s, series.p50), column(forecast.step_s, series.p10));
      seriesOpts.push(
        { label: "p90", stroke: "rgba(90,169,255,0.5)", width: 1 },
        { label: "p50", stroke: "#5aa9ff", width: 2 },
        { label: "p10", stroke: "rgba(90,169,255,0.5)", width: 1 },
      );
    }
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.metric = metric;
    if (series) div.dataset.band = "p10-p90";
    const unit = server.units?.[metric] || "";
    div.innerHTML = `<div class="title"><span>${esc(metric)} <span class="muted">${esc(unit)}</span></span><span class="muted">${series ? `observed ${series.observed_steps} steps` : "not forecast"}</span></div>`;
    box.appendChild(div);
    const options = {
      width: Math.max(360, box.clientWidth - 20), height: 180, series: seriesOpts,
      axes: [{ stroke: "#8593a3", grid: { stroke: "#2a3340" } }, { stroke: "#8593a3", grid: { stroke: "#2a3340" }, size: 50 }],
      scales: { x: { time: true } },
      legend: { show: true },
    };
    if (series) options.bands = [{ series: [2, 4], fill: "rgba(90,169,255,0.18)" }];
    try {
      new uPlot(options, data, div);
      fleetcast.charts += 1;
      if (series) fleetcast.bands += 1;
    } catch (error) { report(error); }
  }
  if (!names.size) box.innerHTML = `<p class="muted">no samples or forecast yet</p>`;
}

// ---- alerts ----------------------------------------------------------------------------------
function activeAlertsRows() {
  const order = { critical: 3, warning: 2, watch: 1, healthy: 0 };
  const active = [...state.alerts.values()].sort((a, b) => order[b.severity] - order[a.severity] || a.opened_ms - b.opened_ms);
  const table = $("#active-alerts");
  if (!table) return;
  $("#active-count").textContent = active.length;
  table.innerHTML = `<tr><th>severity</th><th>server</th><th>subject</th><th class="num">value</th><th>reason</th><th>opened</th></tr>
    ${active.map((a) => `<tr data-alert-id="${esc(a.id)}" data-severity="${esc(a.severity)}"><td>${badge(a.severity)}</td><td><a href="#/server/${encodeURIComponent(a.server)}">${esc(a.server)}</a></td><td>${esc(a.metric)}</td><td class="num">${fmt(a.predicted_value)}</td><td>${esc(a.reason)}</td><td>${time(a.opened_ms)}</td></tr>`).join("") || `<tr><td colspan="6" class="muted">no open alerts</td></tr>`}`;
}

function renderAlerts(main) {
  const range = sessionStorage.getItem("fleetcast.range") || "1h";
  main.innerHTML = `
    <h2>Active alerts (<span id="active-count">0</span>)</h2>
    <table id="active-alerts"></table>
    <h2>History</h2>
    <div class="filters">range <select id="range">${["30m", "1h", "8h", "1d", "1w", "1M"].map((r) => `<option${r === range ? " selected" : ""}>${r}</option>`).join("")}</select>
      <button class="small" id="csv">export CSV</button><span class="muted" id="history-note"></span></div>
    <table id="history"><tr><td class="muted">loading…</td></tr></table>`;
  activeAlertsRows();
  $("#range").onchange = (event) => { sessionStorage.setItem("fleetcast.range", event.target.value); renderAlerts(main); };
  $("#csv").onclick = () => downloadCsv(range).catch(report);
  getJson(`/api/v1/alerts?state=history&time_range=${range}`).then((history) => {
    const table = $("#history");
    if (!table) return;
    const rows = history.alerts.slice(-500).reverse();
    table.innerHTML = `<tr><th>time</th><th>server</th><th>subject</th><th>event</th><th>level</th><th class="num">value</th><th>notes</th></tr>` +
      (rows.map((e) => `<tr><td>${esc(e.timestamp.replace("T", " ").slice(0, 19))}</td><td>${esc(e.server_name)}</td><td>${esc(e.metric)}</td><td>${esc(e.event_type)}</td><td>${badge(e.new_level)}</td><td class="num">${fmt(e.value)}</td><td>${esc(e.notes)}</td></tr>`).join("") || `<tr><td colspan="7" class="muted">no alert events in ${esc(range)}</td></tr>`);
    $("#history-note").textContent = `${history.count} events${history.truncated ? " (cut short)" : ""}`;
  }).catch(report);
}

async function downloadCsv(range) {
  const blob = await (await api(`/api/v1/alerts?state=history&time_range=${range}&format=csv`)).blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `fleetcast_alerts_${range}.csv`;
  link.click();
  URL.revokeObjectURL(link.href);
}

// ---- model -----------------------------------------------------------------------------------
function renderModel(main) {
  main.innerHTML = `<p class="muted">loading…</p>`;
  getJson("/api/v1/model").then((model) => {
    const models = model.models.map((m) => `<tr><td>${esc(m.model)}</td><td>${esc(m.model_version)}</td><td class="num">${m.servers}</td><td>${time(m.newest_issued_ms)}</td></tr>`).join("");
    const workers = model.workers.map((w) => `<tr><td>${esc(w.name)}</td><td>${esc(w.id)}</td><td>${esc(JSON.stringify(w.metadata))}</td></tr>`).join("");
    main.innerHTML = `<h2>Model in service</h2>
      <table id="models"><tr><th>model</th><th>version</th><th class="num">servers forecast</th><th>newest forecast</th></tr>${models || `<tr><td colspan="4" class="muted">no forecast yet</td></tr>`}</table>
      <h2>Predictor workers ($SRV.INFO)</h2>
      <table><tr><th>service</th><th>id</th><th>metadata</th></tr>${workers || `<tr><td colspan="3" class="muted">no predictor answers $SRV.INFO yet</td></tr>`}</table>`;
  }).catch(report);
}

// ---- scenario --------------------------------------------------------------------------------
async function switchScenario(name) {
  const response = await api("/api/v1/scenario", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ scenario: name }) });
  const reply = await response.json();
  showScenario(reply.new_scenario);
  toast(`scenario ${reply.old_scenario} → ${reply.new_scenario} (${reply.affected_total || reply.affected_servers.length} servers driven)`);
}
function showScenario(name) {
  state.scenario = name;
  $("#scenario-now").textContent = name ? `now: ${name}` : "";
  for (const button of document.querySelectorAll("#scenario button")) button.classList.toggle("current", button.dataset.scenario === name);
}

// ---- start -----------------------------------------------------------------------------------
for (const button of document.querySelectorAll("#scenario button")) {
  button.addEventListener("click", () => switchScenario(button.dataset.scenario).catch((error) => toast(error.message, "warning")));
}
window.addEventListener("hashchange", () => { state.server = null; scheduleRender(true); });
getJson("/api/v1/scenario").then((reply) => showScenario(reply.new_scenario)).catch(() => $("#scenario").classList.add("muted"));
connect(); // its `hello` loads the fleet
