// possync status page: polls the local API and renders it. Data is only ever written with
// textContent (never as HTML): exception texts come from POS data.
"use strict";

const API = "/api/v1";
const POLL_MS = 5000;
const SYMBOLS = { green: "✓", amber: "!", red: "✕", grey: "–" };
const HEADLINES = { green: "In sync", amber: "Needs attention", red: "Action needed", grey: "possync is not running" };
let current = null;

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function call(path, options = {}) {
  const init = { credentials: "same-origin", headers: { "X-Possync-Request": "1" }, ...options };
  if (options.body !== undefined) init.headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, init);
  if (response.status === 401) { showLogin(); throw new Error("signed out"); }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.message) || `HTTP ${response.status}`);
  return body;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

function when(iso) {
  if (!iso) return "never";
  const t = new Date(iso);
  return `${t.toLocaleTimeString()} (${age((Date.now() - t.getTime()) / 1000)} ago)`;
}

function showLogin(message) {
  $("main").hidden = true;
  $("login").hidden = false;
  if (message) $("login-error").textContent = message;
}

function renderStatus(s) {
  current = s;
  $("main").hidden = false;
  $("login").hidden = true;
  $("store").textContent = `· store ${s.store_id}`;
  const banner = $("banner");
  banner.className = `banner ${s.state}`;
  banner.dataset.state = s.state;
  $("symbol").textContent = SYMBOLS[s.state] || "?";
  $("headline").textContent = HEADLINES[s.state] || s.state;
  const reasons = $("reasons");
  reasons.replaceChildren(...s.reasons.map((r) => el("li", r)));
  $("pending").textContent = `${s.pending}`;
  $("oldest").textContent = s.oldest_pending_age_s === null ? "–" : `${age(s.oldest_pending_age_s)} (limit ${age(s.sla_s)})`;
  $("acked").textContent = `${s.acked}`;
  $("exceptions-count").textContent = `${s.exceptions_open}`;
  $("last-sync").textContent = when(s.last_sync_at);
  $("wms").textContent = s.wms_reachable === true ? `reachable${s.wms_latency_ms !== null ? `, ${s.wms_latency_ms} ms` : ""}`
    : s.wms_reachable === false ? "NOT reachable" : "unknown";
  $("disk").textContent = s.disk_free_mb === null ? "–" : `${s.disk_free_mb} MB`;
  $("pause").textContent = s.paused ? "Resume delivery" : "Pause delivery";
  $("pause").dataset.paused = s.paused ? "1" : "0";
  $("version").textContent = s.version ? `possync ${s.version}` : "";
  const rows = Object.entries(s.sources || {}).map(([name, h]) => {
    const tr = el("tr");
    tr.append(el("td", name), el("td", h.state), el("td", h.captured),
      el("td", h.last_capture_at ? new Date(h.last_capture_at * 1000).toLocaleString() : "–"), el("td", h.last_error || ""));
    return tr;
  });
  $("sources").tBodies[0].replaceChildren(...rows);
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function renderAgentDown() {
  renderStatus({ ...(current || { store_id: "", pending: 0, acked: 0, exceptions_open: 0, sources: {}, sla_s: 60 }),
    state: "grey", reasons: ["The possync agent is not answering. It may be stopped or restarting."],
    wms_reachable: null, last_sync_at: current ? current.last_sync_at : null, oldest_pending_age_s: null,
    disk_free_mb: null, paused: false });
}

function renderExceptions(items) {
  $("no-exceptions").hidden = items.length > 0;
  $("exception-list").replaceChildren(...items.map((x) => {
    const box = el("div", null, "exception");
    box.dataset.id = x.id;
    box.append(el("p", x.message, "reason"));
    const where = `transaction ${x.pos_transaction_id || "?"}${x.line_no !== null ? `, line ${x.line_no}` : ""}`;
    box.append(el("p", `${where} · item ${x.raw_item_id || "–"} (as the POS wrote it)`));
    box.append(el("p", `${x.source} · ${x.source_ref} · ${x.code} · first seen ${new Date(x.created_at * 1000).toLocaleString()}`, "muted"));
    const buttons = el("div", null, "buttons");
    const retry = el("button", "Retry");
    retry.type = "button";
    retry.dataset.action = "retry";
    const resolve = el("button", "Resolve without sending");
    resolve.type = "button";
    resolve.dataset.action = "resolve";
    const result = el("span", "", "result");
    result.setAttribute("role", "status");
    retry.addEventListener("click", () => act(`/exceptions/${x.id}/retry`, result));
    resolve.addEventListener("click", () => act(`/exceptions/${x.id}/resolve`, result, { note: "resolved on the status page" }));
    buttons.append(retry, resolve, result);
    box.append(buttons);
    return box;
  }));
}

function renderChart(points) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  const width = 720, height = 160, pad = 10;
  const shown = points.slice(-360);
  const maxValue = Math.max(1, ...shown.map((p) => Math.max(p.delivered, p.pending)));
  const step = (width - 2 * pad) / 360;
  const y = (v) => height - pad - (v / maxValue) * (height - 2 * pad);
  const nodes = [];
  const axis = document.createElementNS(ns, "line");
  axis.setAttribute("x1", pad); axis.setAttribute("x2", width - pad);
  axis.setAttribute("y1", height - pad); axis.setAttribute("y2", height - pad);
  axis.setAttribute("class", "axis");
  nodes.push(axis);
  const offset = 360 - shown.length;
  shown.forEach((p, i) => {
    if (p.delivered <= 0) return;
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", pad + (offset + i) * step); bar.setAttribute("width", Math.max(step - 0.5, 0.5));
    bar.setAttribute("y", y(p.delivered)); bar.setAttribute("height", height - pad - y(p.delivered));
    bar.setAttribute("class", "bar");
    nodes.push(bar);
  });
  if (shown.length) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", shown.map((p, i) => `${pad + (offset + i) * step},${y(p.pending)}`).join(" "));
    line.setAttribute("class", "line");
    nodes.push(line);
  }
  svg.replaceChildren(...nodes);
}

async function act(path, resultNode, body) {
  resultNode.textContent = "…";
  try {
    const answer = await call(path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });
    resultNode.textContent = answer.message;
    await refresh();
  } catch (error) {
    resultNode.textContent = error.message;
  }
}

async function refresh() {
  try {
    const status = await call("/status");
    renderStatus(status);
  } catch (error) {
    if (error.message !== "signed out") renderAgentDown();
    return;
  }
  try { renderExceptions(await call("/exceptions")); } catch (error) { /* shown on next poll */ }
  try { renderChart(await call("/history")); } catch (error) { /* chart is optional */ }
}

async function lookupStock(event) {
  event.preventDefault();
  const out = $("stock-result");
  const query = $("stock-query").value.trim();
  out.replaceChildren(el("p", "…"));
  try {
    const records = await call(`/stock?sku=${encodeURIComponent(query)}`);
    if (!records.length) { out.replaceChildren(el("p", `No stock record for ${query}.`)); return; }
    const table = el("table");
    const head = el("tr");
    ["SKU", "Location", "On hand now", "WMS snapshot", "Not yet at WMS", "Available", "Snapshot age"].forEach((h) => head.append(el("th", h)));
    table.append(head);
    records.forEach((r) => {
      const tr = el("tr");
      [r.sku, r.location, r.effective_on_hand, r.snapshot_on_hand, r.pending_delta, r.available, age(r.snapshot_age_s)]
        .forEach((v) => tr.append(el("td", v)));
      table.append(tr);
    });
    out.replaceChildren(table);
  } catch (error) {
    out.replaceChildren(el("p", error.message, "error"));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sync-now").addEventListener("click", () => act("/sync-now", $("action-result")));
  $("pause").addEventListener("click", () => act($("pause").dataset.paused === "1" ? "/resume" : "/pause", $("action-result")));
  $("stock-form").addEventListener("submit", lookupStock);
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("/login", { method: "POST", body: JSON.stringify({ token: $("token").value }) });
      $("token").value = "";
      $("login-error").textContent = "";
      await refresh();
    } catch (error) {
      $("login-error").textContent = error.message === "signed out" ? "That is not this agent's API token." : error.message;
    }
  });
  if (new URLSearchParams(location.search).has("expired")) {
    showLogin("That sign-in link has expired; open the page from the tray again or enter the API token.");
  }
  refresh();
  setInterval(refresh, POLL_MS);
});
