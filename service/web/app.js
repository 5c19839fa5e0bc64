// keepgpu dashboard: polls the service's REST API and draws the GPUs and
// the sessions. Plain JavaScript, no build step; the token travels in an
// HttpOnly cookie the service set, so this code never sees it.
"use strict";

const HISTORY = 90; // utilization samples kept per GPU
const history = new Map(); // uuid -> [{t, u}] (u null when unknown)
let timer = null;
let busy = false;

const $ = (sel) => document.querySelector(sel);

// el builds an element; text is set as text, never parsed as HTML.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "width") e.style.width = v; // CSSOM: allowed by the page's CSP, a style attribute is not
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "n/a";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function duration(s) {
  if (!s) return "—";
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) throw new Error("Not authorized: open the dashboard URL that `keepgpu start` or `keepgpu serve` printed (it carries ?token=…).");
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { throw new Error(`${method} ${path}: HTTP ${r.status}`); }
  if (!r.ok) throw new Error((data && data.error && data.error.message) || `${method} ${path}: HTTP ${r.status}`);
  return data;
}

function banner(msg) {
  const b = $("#banner");
  b.textContent = msg || "";
  b.hidden = !msg;
}

// chart draws a GPU's utilization history as an inline SVG: 0..100% over
// the last HISTORY polls, with gaps where the utilization was unknown.
function chart(samples) {
  const w = HISTORY - 1, h = 100;
  const s = svg("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", role: "img",
    "aria-label": "utilization history" });
  for (const y of [25, 50, 75]) s.append(svg("line", { class: "grid", x1: 0, x2: w, y1: y, y2: y }));
  const offset = HISTORY - samples.length;
  let pts = [];
  const flush = () => {
    if (pts.length === 1) pts.push([pts[0][0] + 0.5, pts[0][1]]);
    if (pts.length) s.append(svg("polyline", { points: pts.map((p) => p.join(",")).join(" ") }));
    pts = [];
  };
  samples.forEach((p, i) => {
    if (p.u === null) { flush(); return; }
    pts.push([offset + i, h - 2 - p.u * 0.96]); // 0% and 100% stay inside the frame
  });
  flush();
  return s;
}

// physical names a GPU's UUID and, where it differs from its id (the
// ordinal --gpus takes), the index nvidia-smi or rocm-smi shows it under.
function physical(g) {
  if (g.physical_id === undefined || g.physical_id === null || g.physical_id === g.id) return g.uuid;
  return `${g.uuid} · ${g.platform === "rocm" ? "rocm-smi" : "nvidia-smi"} index ${g.physical_id}`;
}

function gpuCard(g) {
  const ours = g.processes.filter((p) => p.job_id).reduce((a, p) => a + p.memory_used, 0);
  const total = g.memory_total, used = g.memory_used;
  const bar = el("div", { class: "bar", title: "blue: keepgpu sessions, orange: other processes" });
  if (total) {
    bar.append(el("div", { class: "ours", width: `${(100 * Math.min(ours, used) / total).toFixed(2)}%` }));
    bar.append(el("div", { class: "other", width: `${(100 * Math.max(used - ours, 0) / total).toFixed(2)}%` }));
  }
  const util = g.utilization === null || g.utilization === undefined
    ? el("span", { class: "util na", text: "n/a", title: "the driver gives no utilization for this GPU (MIG, or unsupported)" })
    : el("span", { class: "util", text: g.utilization + "%" });
  const procs = el("ul", { class: "procs" });
  for (const p of g.processes) {
    const who = p.job_id ? `keepgpu session ${p.job_id}` : [p.command, p.user].filter(Boolean).join(" · ") || "process";
    procs.append(el("li", { class: p.job_id ? "ours" : "" }, el("span", { text: `pid ${p.pid} · ${who}` }), el("span", { text: bytes(p.memory_used) })));
  }
  if (!g.processes.length) procs.append(el("li", { class: "muted" }, "no compute process"));
  return el("div", { class: "card gpu", "data-uuid": g.uuid, "data-id": g.id },
    el("div", { class: "title" },
      el("span", {}, `GPU ${g.id} · ${g.name}`,
        g.platform === "rocm" ? el("span", { class: "tag", text: "ROCm" }) : null,
        g.mig ? el("span", { class: "tag", text: "MIG" }) : null,
        g.compute_mode && g.compute_mode !== "default" ? el("span", { class: "tag", text: g.compute_mode }) : null),
      util),
    el("div", { class: "uuid", text: physical(g) }),
    bar,
    el("div", { class: "row" },
      el("span", { class: "mem", text: `${bytes(used)} / ${bytes(total)} used` }),
      el("span", { text: ours ? `${bytes(ours)} held by keepgpu` : "" })),
    chart(history.get(g.uuid) || []),
    el("div", { class: "row" },
      el("span", { text: "utilization history" }),
      el("span", { text: (history.get(g.uuid) || []).some((p) => p.u !== null) ? "" : "no readings (n/a)" })),
    procs);
}

function renderGPUs(r) {
  const now = Date.now();
  const seen = new Set();
  for (const g of r.gpus) {
    seen.add(g.uuid);
    const h = history.get(g.uuid) || [];
    h.push({ t: now, u: g.utilization === undefined ? null : g.utilization });
    while (h.length > HISTORY) h.shift();
    history.set(g.uuid, h);
  }
  for (const k of [...history.keys()]) if (!seen.has(k)) history.delete(k);
  const box = $("#gpus");
  box.replaceChildren(...r.gpus.map(gpuCard));
  $("#gpus-note").textContent = r.error ? `(${r.error})`
    : r.gpus.length ? (r.note ? `(${r.note})` : "")
    : r.note ? `(no GPU: ${r.note})` : "(no GPU on this node)";
}

function sessionRow(s) {
  const state = s.state === "active" && s.paused ? "paused" : s.state;
  const stateCell = el("td", {}, el("div", { class: `state ${state}`, text: state === "paused" ? "active, kernel paused" : s.state }));
  if (s.paused_reason) stateCell.append(el("div", { class: "why", text: s.paused_reason }));
  if (s.last_error) stateCell.append(el("div", { class: "error", text: s.last_error }));
  const gpus = s.gpus.length
    ? s.gpus.map((g) => `${g.gpu}${g.kernel && g.kernel !== "running" ? " (" + g.kernel + ")" : ""}`).join(", ")
    : (s.params.gpu_ids ? s.params.gpu_ids.join(", ") : "all");
  const telemetry = s.gpus.filter((g) => g.telemetry && g.telemetry !== "ok").map((g) => `gpu ${g.gpu}: telemetry ${g.telemetry}`);
  const gpuCell = el("td", {}, gpus);
  for (const t of telemetry) gpuCell.append(el("div", { class: "why", text: t }));
  const done = s.state === "runtime_failed" || s.state === "stop_failed";
  return el("tr", { "data-job": s.job_id, "data-state": s.state },
    el("td", { class: "job", text: s.job_id }),
    stateCell,
    gpuCell,
    el("td", {}, `${s.params.vram} per GPU`, el("div", { class: "why", text: `${bytes(s.bytes_held)} held` })),
    el("td", { text: s.active ? duration(s.hold_seconds) : "—" }),
    el("td", { text: s.pid ? `pid ${s.pid}` : "—" }),
    el("td", {}, el("button", { type: "button", class: "danger small release", "data-job": s.job_id,
      disabled: s.state === "stopping", onclick: () => release(s.job_id) }, done ? "Clear" : "Release")));
}

function renderSessions(r) {
  const jobs = r.active_jobs || [];
  $("#sessions tbody").replaceChildren(...jobs.map(sessionRow));
  $("#sessions").hidden = jobs.length === 0;
  $("#no-sessions").hidden = jobs.length !== 0;
  $("#release-all").disabled = jobs.length === 0;
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    // Each loads on its own: GPUs that cannot be listed (503) leave the
    // sessions on show, and the reason in the GPU area.
    const [health, gpus, sessions] = await Promise.allSettled([api("GET", "/health"), api("GET", "/api/gpus"), api("GET", "/api/sessions")]);
    if (health.status === "fulfilled") {
      const h = health.value;
      $("#service").textContent = `${location.host} · pid ${h.pid}${h.version ? " · " + h.version : ""}` +
        (h.cuda_visible_devices !== null && h.cuda_visible_devices !== undefined ? ` · CUDA_VISIBLE_DEVICES=${h.cuda_visible_devices}` : "");
    }
    if (gpus.status === "fulfilled") renderGPUs(gpus.value);
    else gpuError(gpus.reason.message);
    if (sessions.status === "fulfilled") renderSessions(sessions.value);
    const failed = [health, sessions].find((r) => r.status === "rejected");
    banner(failed ? failed.reason.message : "");
  } finally {
    busy = false;
  }
}

// gpuError says in the GPU area why the GPUs cannot be shown.
function gpuError(msg) {
  history.clear();
  $("#gpus").replaceChildren(el("p", { id: "gpus-error", class: "error", text: `GPUs cannot be listed: ${msg}` }));
  $("#gpus-note").textContent = "";
}

async function release(id) {
  for (const b of document.querySelectorAll(`button.release`)) if (b.dataset.job === id) b.disabled = true;
  try {
    await api("DELETE", "/api/sessions/" + encodeURIComponent(id));
  } catch (e) {
    banner(e.message);
  }
  refresh();
}

async function releaseAll() {
  $("#release-all").disabled = true;
  try {
    await api("DELETE", "/api/sessions");
  } catch (e) {
    banner(e.message);
  }
  refresh();
}

async function start(ev) {
  ev.preventDefault();
  const msg = $("#start-msg");
  const body = {};
  const gpus = $("#f-gpus").value.trim();
  // An emptied field is sent as it is, for the service to refuse: only
  // "all" means every GPU.
  if (gpus.toLowerCase() !== "all") body.gpu_ids = gpus;
  for (const [id, key] of [["#f-vram", "vram"], ["#f-interval", "interval"], ["#f-job", "job_id"]]) {
    const v = $(id).value.trim();
    if (v) body[key] = v;
  }
  for (const [id, key] of [["#f-util", "util"], ["#f-busy", "busy_threshold"]]) {
    const v = $(id).value.trim();
    if (v !== "") body[key] = Number(v);
  }
  $("#start").disabled = true;
  msg.className = "";
  msg.textContent = "starting…";
  try {
    const s = await api("POST", "/api/sessions", body);
    msg.className = "good";
    msg.textContent = `started ${s.job_id}`;
    $("#f-job").value = "";
  } catch (e) {
    msg.className = "bad";
    msg.textContent = e.message;
  } finally {
    $("#start").disabled = false;
  }
  refresh();
}

// schedule polls at the chosen period while the tab is visible; a hidden
// tab polls nothing, and is brought up to date when it shows again.
function schedule() {
  clearTimeout(timer);
  const every = Number($("#refresh").value);
  if (!every || document.hidden) return;
  timer = setTimeout(async () => {
    await refresh();
    schedule();
  }, every);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
  schedule();
});
$("#refresh").addEventListener("change", schedule);
$("#refresh-now").addEventListener("click", refresh);
$("#release-all").addEventListener("click", releaseAll);
$("#start-form").addEventListener("submit", start);
refresh().then(schedule);
