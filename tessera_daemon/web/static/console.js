/* tessera-daemon web console: vanilla JS + canvas, no library, nothing fetched from anywhere but the daemon.
 * Data: /v1/topology, /v1/fleet, /v1/summary, /v1/incidents, /v1/firings/<id>/evidence, /v1/shards/<id>,
 * /v1/scenarios; live: /v1/stream (Server-Sent Events, one small diff per batch of windows). */
"use strict";

const STATES = ["warming", "healthy", "evidence building", "firing", "frozen by event", "stale or lost", "no data"];
const COLOURS = ["#4f5d73", "#2f9e5f", "#e3a52a", "#e5484d", "#8a6fe8", "#2b2f36", "#6b7280"];
const T = window.__tessera = { t0: performance.now(), fetchedMs: null, firstPaintMs: null, updates: [], errors: [], ready: false };

const S = {
  topo: null, codes: {}, selector: "any", summary: null, incidents: null, route: ["fleet"],
  geom: null, firingTargets: [], detail: null, scenarios: null, pendingDraw: false,
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function fmtTs(ts) {
  if (ts == null) return "–";
  const d = new Date(ts * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19);
}
function fmtClock(ts) { return new Date(ts * 1000).toISOString().slice(11, 19); }
function fmtDur(s) {
  if (s == null) return "–";
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
function fmtNum(v, d = 2) { return v == null ? "–" : Number(v).toFixed(d); }

/* ------------------------------------------------------------------ fleet map geometry and drawing */

function layoutMap() {
  const topo = S.topo;
  const canvas = $("map");
  if (!topo) return;
  const wrap = canvas.parentElement;
  const width = Math.max(280, wrap.clientWidth - 4);
  const n = topo.shards.length;
  let maxPerHost = 1;
  for (const z of topo.zones) for (const r of z.racks) for (const h of r.hosts) maxPerHost = Math.max(maxPerHost, h.shards.length);
  const cols = Math.min(maxPerHost, 16);
  if (S.geom && S.geom.key === topo.key && S.geom.avail === width) return;  // unchanged
  const targetH = Math.max(260, window.innerHeight * 0.62);
  // the largest cell (3 to 16 px) whose layout fits the target height: a binary search, not 14 layouts
  let lo = 3, hi = 16, geom = place(topo, width, hi, cols);
  if (geom.height > targetH) {
    geom = place(topo, width, lo, cols);
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1, g = place(topo, width, mid, cols);
      if (g.height <= targetH) { lo = mid; geom = g; } else hi = mid;
    }
  }
  geom.key = topo.key;
  geom.avail = width;
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${geom.width}px`;
  canvas.style.height = `${geom.height}px`;
  canvas.width = Math.round(geom.width * dpr);
  canvas.height = Math.round(geom.height * dpr);
  geom.dpr = dpr;
  geom.n = n;
  S.geom = geom;
}

function place(topo, width, cell, cols) {
  const gap = cell >= 8 ? 1 : 0;
  const pitch = cell + gap;
  const x = new Float32Array(topo.shards.length), y = new Float32Array(topo.shards.length);
  const boxes = {};   // node id -> [x, y, w, h]
  const hostBoxes = [];
  const labelH = 16, rackPad = Math.max(3, Math.round(cell / 2)), rackLabel = cell >= 6 ? 13 : 0;
  let cy = 0;
  for (const z of topo.zones) {
    const zoneTop = cy;
    cy += labelH;
    let cx = 0, rowH = 0;
    for (const r of z.racks) {
      let rackRows = 0;
      for (const h of r.hosts) rackRows += Math.ceil(h.shards.length / cols) || 1;
      const bw = cols * pitch + 2 * rackPad, bh = rackRows * pitch + 2 * rackPad + rackLabel;
      if (cx > 0 && cx + bw > width) { cx = 0; cy += rowH + 6; rowH = 0; }
      const rx = cx, ry = cy;
      let hy = ry + rackPad + rackLabel;
      for (const h of r.hosts) {
        const rows = Math.ceil(h.shards.length / cols) || 1;
        h.shards.forEach((idx, k) => {
          x[idx] = rx + rackPad + (k % cols) * pitch;
          y[idx] = hy + Math.floor(k / cols) * pitch;
        });
        const hb = [rx + rackPad - 1, hy - 1, cols * pitch + 1, rows * pitch + 1];
        boxes[h.id] = hb;
        hostBoxes.push([h.id, hb]);
        for (const g of [h.psu, h.nvlink_domain]) {
          if (!g) continue;
          const b = boxes[g];
          boxes[g] = b ? union(b, hb) : hb.slice();
        }
        hy += rows * pitch;
      }
      boxes[r.id] = [rx, ry, bw, bh];
      cx += bw + 6;
      rowH = Math.max(rowH, bh);
    }
    cy += rowH + 10;
    boxes[z.id] = [0, zoneTop, width, cy - zoneTop - 6];
  }
  return { x, y, cell, pitch, boxes, hostBoxes, width, height: Math.max(cy, 40), labelH, rackLabel };
}

function union(a, b) {
  const x0 = Math.min(a[0], b[0]), y0 = Math.min(a[1], b[1]);
  const x1 = Math.max(a[0] + a[2], b[0] + b[2]), y1 = Math.max(a[1] + a[3], b[1] + b[3]);
  return [x0, y0, x1 - x0, y1 - y0];
}

function drawMap() {
  const g = S.geom, topo = S.topo;
  if (!g || !topo) return;
  const drawStart = performance.now();
  const ctx = $("map").getContext("2d");
  ctx.setTransform(g.dpr, 0, 0, g.dpr, 0, 0);
  ctx.clearRect(0, 0, g.width, g.height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "top";
  for (const z of topo.zones) {
    const zb = g.boxes[z.id];
    ctx.fillStyle = "#8b95a3";
    ctx.fillText(`cooling zone ${z.id}`, 0, zb[1] + 2);
    for (const r of z.racks) {
      const b = g.boxes[r.id];
      ctx.fillStyle = "#1c222a";
      ctx.fillRect(b[0], b[1], b[2], b[3]);
      if (g.rackLabel) { ctx.fillStyle = "#8b95a3"; ctx.fillText(short(r.id), b[0] + 3, b[1] + 2); }
    }
  }
  const code = S.codes[S.selector] || "";
  const c = g.cell;
  for (let s = 0; s < COLOURS.length; s++) {
    ctx.fillStyle = COLOURS[s];
    const ch = String(s);
    for (let i = 0; i < g.n; i++) if (code[i] === ch) ctx.fillRect(g.x[i], g.y[i], c, c);
  }
  if (!code) { ctx.fillStyle = COLOURS[0]; for (let i = 0; i < g.n; i++) ctx.fillRect(g.x[i], g.y[i], c, c); }
  // firing groups outlined: the target node's box (host, rack, PSU, NVLink domain, zone) or the shard's cell
  ctx.lineWidth = 2;
  for (const f of S.firingTargets) {
    let b = g.boxes[f.target];
    if (!b) {
      const idx = S.index && S.index.get(f.target);
      if (idx == null) continue;
      b = [g.x[idx] - 1, g.y[idx] - 1, c + 2, c + 2];
    }
    ctx.strokeStyle = f.severity === "page" ? "#ff6b6f" : f.severity === "ticket" ? "#e3a52a" : "#6aa1e6";
    ctx.strokeRect(b[0] - 1, b[1] - 1, b[2] + 2, b[3] + 2);
  }
  if (T.firstPaintMs == null && code) {
    T.drawStartMs = drawStart;
    T.firstPaintMs = performance.now();
    T.ready = true;
  }
}

function short(id) { const p = id.split("-"); return p.length > 1 ? p.slice(1).join("-") : id; }

function scheduleDraw(then) {
  if (S.pendingDraw) { if (then) S._afterDraw.push(then); return; }
  S.pendingDraw = true;
  S._afterDraw = then ? [then] : [];
  requestAnimationFrame(() => {
    S.pendingDraw = false;
    drawMap();
    const cbs = S._afterDraw; S._afterDraw = [];
    for (const cb of cbs) cb();
  });
}

function hitShard(ev) {
  const g = S.geom;
  if (!g) return -1;
  const rect = $("map").getBoundingClientRect();
  const mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
  for (const [hid, b] of g.hostBoxes) {
    if (mx < b[0] || my < b[1] || mx > b[0] + b[2] || my > b[1] + b[3]) continue;
    for (const z of S.topo.zones) for (const r of z.racks) for (const h of r.hosts) {
      if (h.id !== hid) continue;
      for (const i of h.shards) if (mx >= g.x[i] && mx < g.x[i] + g.pitch && my >= g.y[i] && my < g.y[i] + g.pitch) return i;
    }
  }
  return -1;
}

function setupMap() {
  const canvas = $("map"), tip = $("tip");
  canvas.addEventListener("mousemove", (ev) => {
    const i = hitShard(ev);
    if (i < 0) { tip.hidden = true; return; }
    const code = (S.codes[S.selector] || "")[i];
    tip.textContent = `${S.topo.shards[i]} · ${STATES[Number(code)] || "?"}`;
    const rect = canvas.getBoundingClientRect(), wrap = canvas.parentElement.getBoundingClientRect();
    tip.style.left = `${ev.clientX - wrap.left + canvas.parentElement.scrollLeft + 12}px`;
    tip.style.top = `${ev.clientY - wrap.top + canvas.parentElement.scrollTop + 12}px`;
    tip.hidden = false;
    void rect;
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  canvas.addEventListener("click", (ev) => {
    const i = hitShard(ev);
    if (i >= 0) location.hash = `#shard/${encodeURIComponent(S.topo.shards[i])}`;
  });
  $("selector").addEventListener("change", (ev) => { S.selector = ev.target.value; scheduleDraw(); });
  window.addEventListener("resize", () => { layoutMap(); scheduleDraw(); });
  const legend = $("legend");
  STATES.forEach((name, k) => {
    const i = el("i"); i.style.background = COLOURS[k];
    legend.append(el("span", {}, i, name));
  });
}

function fillSelector(selectors) {
  const sel = $("selector");
  if (sel.options.length === selectors.length) return;
  sel.textContent = "";
  for (const k of selectors) {
    const label = k === "any" ? "worst of all detectors" : (k.length === 1 ? `family ${k}` : `${k} (family A)`);
    sel.append(el("option", { value: k, text: label }));
  }
  sel.value = S.selector;
}

async function loadTopology(given) {
  S.topo = given || await getJSON("/v1/topology");
  S.index = new Map(S.topo.shards.map((s, i) => [s, i]));
  $("fleet-count").textContent = `${S.topo.shards.length} shards`;
  layoutMap();
}

async function loadFleet(given) {
  const f = given || await getJSON("/v1/fleet");
  if (S.topo && f.topology_key !== S.topo.key) await loadTopology();
  S.codes = f.codes;
  fillSelector(f.selectors);
}

function applyFleetDiff(diff) {
  for (const [k, flat] of Object.entries(diff)) {
    const cur = S.codes[k];
    if (!cur) continue;
    const arr = cur.split("");
    for (let j = 0; j < flat.length; j += 2) arr[flat[j]] = String(flat[j + 1]);
    S.codes[k] = arr.join("");
  }
}

/* ------------------------------------------------------------------ summary, warm-up, header */

function renderSummary() {
  const s = S.summary;
  if (!s) return;
  $("mode").textContent = s.mode === "detector" ? "detector worker" : "run";
  const ready = $("ready");
  ready.textContent = s.ready ? "ready" : (s.not_ready[0] || "not ready");
  ready.className = `chip ${s.ready ? "ok" : "warn"}`;
  $("window").textContent = s.window >= 0 ? `window ${s.window} · ${fmtTs(s.window_end_ts)} · lag ${fmtNum(s.lag_s, 1)} s` : "no window yet";
  const w = s.warmup, wb = $("warmup");
  wb.hidden = !!w.done;
  if (!w.done) {
    $("warmup-fill").style.width = `${Math.round(w.fraction * 100)}%`;
    $("warmup-mark").style.left = `${Math.round(w.ready_fraction * 100)}%`;
    $("warmup-text").textContent = `warm-up: ${Math.round(w.fraction * 100)} % of shard-metrics have a baseline` +
      (w.eta_s != null ? `, about ${fmtDur(w.eta_s)} left` : "");
  }
  $("nav-active").textContent = s.incidents.active ? String(s.incidents.active) : "";
  $("nav-scenarios").hidden = !s.scenario;
  const inc = s.incidents;
  const txt = inc.active ? `${inc.active} active` + Object.entries(inc.by_severity).map(([k, v]) => ` · ${v} ${k}`).join("") : "none active";
  $("inc-summary").textContent = txt; $("inc-summary-2").textContent = txt;
  if (S.route[0] === "events") renderEvents();
}

/* ------------------------------------------------------------------ incidents */

function incidentRow(f) {
  const frac = f.threshold_log ? Math.max(0, Math.min(1, (f.evidence_now ?? 0) / f.threshold_log)) : 0;
  const bar = el("div", { class: "ebar", title: `log-evidence ${fmtNum(f.evidence_now)} / threshold ${fmtNum(f.threshold_log)}` }, el("div"));
  bar.firstChild.style.width = `${Math.round(frac * 100)}%`;
  const what = [f.classification, f.metric ? `${f.detector} · ${f.metric}` : f.detector].join(" · ");
  const loc = f.location ? ` · rack ${f.location.rack} · host ${f.location.host}` : "";
  const row = el("div", { class: `inc ${f.state}`, "data-id": f.id, role: "link", tabindex: "0" },
    el("div", { class: "t" }, `${f.scope} ${f.target}`),
    bar,
    el("div", { class: "d" }, `${what}${loc}${f.group ? ` · part of ${f.group}` : ""} · since ${fmtClock(f.change_start_ts)}` +
      (f.members > 1 ? ` · ${f.members} shards` : "") + (f.state === "resolved" ? ` · resolved ${fmtClock(f.resolved_ts)}` : "")));
  row.addEventListener("click", () => { location.hash = `#incident/${f.id}`; });
  return row;
}

function renderIncidents() {
  const data = S.incidents;
  if (!data) return;
  S.firingTargets = [];
  for (const box of [$("incidents-side"), $("incidents-full")]) {
    box.textContent = "";
    if (!data.groups.length) box.append(el("div", { class: "empty" }, "No incident. The fleet looks as it should."));
    for (const g of data.groups) {
      const head = el("div", { class: "group-head" }, el("span", { class: `sev ${g.severity}` }, g.severity),
        el("strong", {}, g.alert), el("span", { class: "muted" }, `${g.active} active`),
        el("a", { href: g.runbook, target: "_blank", rel: "noopener" }, "runbook"));
      const grp = el("div", { class: "group" }, head);
      for (const f of g.firings) grp.append(incidentRow(f));
      box.append(grp);
    }
  }
  // outlines: each open incident's node; a member's own firing inside a group incident is drawn by its group's
  for (const g of data.groups) for (const f of g.firings) {
    if (f.state === "open" && !(f.scope === "shard" && f.classification === "common_mode")) S.firingTargets.push(f);
  }
}

async function loadIncidents(given) {
  S.incidents = given || await getJSON("/v1/incidents");
  renderIncidents();
}

/* ------------------------------------------------------------------ charts */

function chart(canvas, spec) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 200;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: spec.noY ? 8 : 52, r: 10, t: 14, b: 22 };
  let xs = [], ys = [];
  for (const s of spec.series) s.x.forEach((x, k) => { if (x != null && s.y[k] != null) { xs.push(x); ys.push(s.y[k]); } });
  for (const b of spec.bands || []) b.x.forEach((x, k) => { if (b.lo[k] != null) { xs.push(x); ys.push(b.lo[k], b.hi[k]); } });
  for (const l of spec.hlines || []) if (l.y != null) ys.push(l.y);
  ctx.font = "11px system-ui, sans-serif";
  if (!xs.length) {
    ctx.fillStyle = "#8b95a3"; ctx.fillText("no data yet", pad.l, h / 2);
    return 0;
  }
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const yp = (y1 - y0) * 0.08; y0 -= yp; y1 += yp;
  const X = (v) => pad.l + (v - x0) / (x1 - x0) * (w - pad.l - pad.r);
  const Y = (v) => h - pad.b - (v - y0) / (y1 - y0) * (h - pad.t - pad.b);
  ctx.strokeStyle = "#2a313b"; ctx.fillStyle = "#8b95a3"; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = y0 + (y1 - y0) * k / 4, yy = Y(v);
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    if (!spec.noY) ctx.fillText(Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(3), 4, Math.max(2, yy - 6));
  }
  for (let k = 0; k <= 3; k++) {
    const v = x0 + (x1 - x0) * k / 3;
    ctx.fillText(fmtClock(v), Math.min(X(v) - 20, w - 52), h - 14);
  }
  for (const b of spec.bands || []) {
    ctx.fillStyle = b.color; ctx.beginPath();
    let started = false;
    b.x.forEach((x, k) => { if (b.hi[k] != null) { if (!started) { ctx.moveTo(X(x), Y(b.hi[k])); started = true; } else ctx.lineTo(X(x), Y(b.hi[k])); } });
    for (let k = b.x.length - 1; k >= 0; k--) if (b.lo[k] != null) ctx.lineTo(X(b.x[k]), Y(b.lo[k]));
    ctx.closePath(); ctx.fill();
  }
  for (const l of spec.vlines || []) {
    if (l.x == null || l.x < x0 || l.x > x1) continue;
    ctx.strokeStyle = l.color; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(X(l.x), pad.t); ctx.lineTo(X(l.x), h - pad.b); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = l.color; ctx.fillText(l.label || "", X(l.x) + 3, pad.t);
  }
  for (const l of spec.hlines || []) {
    if (l.y == null) continue;
    ctx.strokeStyle = l.color; ctx.setLineDash(l.dash || [6, 4]);
    ctx.beginPath(); ctx.moveTo(pad.l, Y(l.y)); ctx.lineTo(w - pad.r, Y(l.y)); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = l.color; ctx.fillText(l.label || "", w - pad.r - 110, Y(l.y) - 13);
  }
  let points = 0;
  for (const s of spec.series) {
    ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.5; ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    s.x.forEach((x, k) => {
      const v = s.y[k];
      if (v == null || x == null) { pen = false; return; }
      points++;
      if (!pen) { ctx.moveTo(X(x), Y(v)); pen = true; } else ctx.lineTo(X(x), Y(v));
    });
    ctx.stroke(); ctx.setLineDash([]);
  }
  return points;
}

function legendLine(items) {
  const p = el("div", { class: "chart-legend" });
  for (const [colour, label] of items) {
    const i = el("i"); i.style.cssText = `display:inline-block;width:14px;height:3px;margin-right:4px;vertical-align:3px;background:${colour}`;
    p.append(el("span", {}, i, label));
  }
  return p;
}

/* ------------------------------------------------------------------ incident page */

async function showIncident(id) {
  const box = $("incident");
  let d;
  try { d = await getJSON(`/v1/firings/${encodeURIComponent(id)}/evidence`); } catch (e) {
    box.textContent = ""; box.append(el("h2", {}, "Incident not found"), el("p", { class: "muted" }, String(e.message)));
    return;
  }
  S.detail = { kind: "incident", id, data: d };
  const f = d.incident;
  box.textContent = "";
  box.append(el("div", { class: "panel-head" }, el("h2", {}, `${f.alert}: ${f.scope} ${f.target}`),
    el("span", { class: `sev ${f.severity}` }, f.severity)));
  const kv = el("dl", { class: "kv" });
  const add = (k, v) => kv.append(el("dt", {}, k), el("dd", {}, v));
  add("state", f.state); add("classification", f.classification); add("scope / node", `${f.scope} ${f.target}`);
  if (f.location) add("where", `zone ${f.location.zone} · rack ${f.location.rack} · host ${f.location.host}`);
  add("detector", f.metric ? `${f.detector} on ${f.metric}` : f.detector);
  add("change started", `${fmtTs(f.change_start_ts)}${f.direction ? ` (${f.direction})` : ""}`);
  add("opened", fmtTs(f.opened_ts)); if (f.resolved_ts) add("resolved", fmtTs(f.resolved_ts));
  add("evidence", `log ${fmtNum(f.evidence_now)} now, peak ${fmtNum(f.log_evidence)}, threshold ${fmtNum(f.threshold_log)}`);
  add("members", f.members > 1 ? `${f.members} shards` : (f.members_sample[0] || f.target));
  if (f.event_id) add("event", f.event_id);
  box.append(kv);
  const links = el("p", { class: "links" },
    el("a", { href: `/v1/firings/${encodeURIComponent(f.id)}`, id: "firing-json" }, "firing JSON"),
    el("a", { href: f.runbook, target: "_blank", rel: "noopener" }, `runbook: ${f.alert}`));
  for (const m of f.members_sample.slice(0, 4)) links.append(el("a", { href: `#shard/${encodeURIComponent(m)}` }, `shard ${m}`));
  box.append(links);
  box.append(el("h3", {}, "Evidence against its threshold"));
  const ec = el("canvas", { class: "chart", id: "evidence-chart" });
  box.append(ec, legendLine([["#ff6b6f", "log-evidence"], ["#e3a52a", "threshold"], ["#6aa1e6", "resolve below"], ["#8a6fe8", "change started"]]));
  const mh = d.members_history;
  let mc = null;
  if (mh && mh.members.length) {
    box.append(el("h3", {}, `Members vs cohort ${mh.cohort || ""} (${mh.members.length} of ${mh.members_total} shown; band: the material margin around each baseline)`));
    mc = el("canvas", { class: "chart", id: "members-chart" });
    box.append(mc, legendLine([["#ff6b6f", "member values"], ["#dfe4ea", "cohort centre"], ["#7cb4ff", "member baseline"], ["#7cb4ff55", "material margin"]]));
  }
  box.append(el("details", {}, el("summary", {}, "receipt"), el("pre", {}, JSON.stringify(d.receipt, null, 2))));
  drawIncidentCharts(d, ec, mc);
}

function drawIncidentCharts(d, ec, mc) {
  const ev = d.evidence, f = d.incident;
  const n = chart(ec, {
    series: [{ x: ev.ts, y: ev.log_evidence, color: "#ff6b6f", width: 2 }],
    hlines: [{ y: ev.threshold_log, color: "#e3a52a", label: "threshold" }, { y: d.resolve_below_log, color: "#6aa1e6", label: "resolve below", dash: [2, 4] }],
    vlines: [{ x: f.change_start_ts, color: "#8a6fe8", label: "change" }],
  });
  ec.dataset.points = String(n);
  const mh = d.members_history;
  if (mc && mh) {
    const series = [], bands = [];
    mh.members.forEach((m, k) => {
      if (k < 3) bands.push({ x: mh.ts, lo: m.margin_low, hi: m.margin_high, color: "#7cb4ff22" });
      series.push({ x: mh.ts, y: m.baseline, color: "#7cb4ff", width: 1, dash: [4, 3] });
      series.push({ x: mh.ts, y: m.value, color: k === 0 ? "#ff6b6f" : "#ff6b6f99", width: k === 0 ? 2 : 1 });
    });
    series.push({ x: mh.ts, y: mh.cohort_centre, color: "#dfe4ea", width: 2 });
    mc.dataset.points = String(chart(mc, { series, bands }));
  }
}

/* ------------------------------------------------------------------ shard page */

async function showShard(id) {
  const box = $("shard");
  let d;
  try { d = await getJSON(`/v1/shards/${encodeURIComponent(id)}`); } catch (e) {
    box.textContent = ""; box.append(el("h2", {}, "Shard not found"), el("p", { class: "muted" }, String(e.message)));
    return;
  }
  S.detail = { kind: "shard", id };
  box.textContent = "";
  box.append(el("h2", {}, `Shard ${d.shard}`));
  const kv = el("dl", { class: "kv" });
  const add = (k, v) => kv.append(el("dt", {}, k), el("dd", {}, v));
  if (d.location) add("where", `zone ${d.location.zone} · rack ${d.location.rack} · host ${d.location.host}`);
  add("cohort", d.cohort || "–"); add("stale", d.stale ? "yes" : "no");
  add("labels", Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(" "));
  const warm = Object.entries(d.warmup || {});
  add("warm-up", warm.length ? warm.map(([m, v]) => `${m} ${Math.round(v * 100)} %`).join(" · ") : "–");
  const fam = Object.entries(d.family_log_evidence || {});
  if (fam.length) add("families (log-evidence)", fam.map(([k, v]) => `${k} ${fmtNum(v)}`).join(" · "));
  add("threshold (log)", fmtNum(d.threshold_log));
  box.append(kv);
  if (d.active_firings.length) {
    box.append(el("h3", {}, "Active firings"));
    for (const f of d.active_firings) box.append(el("p", {}, el("a", { href: `#incident/${f.id}` }, `${f.classification} · ${f.detector} ${f.metric || ""} on ${f.scope} ${f.target}`)));
  }
  box.append(el("h3", {}, "Recent values: cohort centre, this shard's baseline and band, evidence"));
  const grid = el("div", { class: "charts" });
  box.append(grid);
  const h = d.history || { ts: [], metrics: {} };
  for (const [m, s] of Object.entries(h.metrics)) {
    const cell = el("div", {}, el("div", { class: "muted" }, `${m} · evidence now ${fmtNum(d.metrics[m] && d.metrics[m].log_evidence)}`));
    const c1 = el("canvas", { class: "mini" }), c2 = el("canvas", { class: "mini" });
    cell.append(c1, c2);
    grid.append(cell);
    requestAnimationFrame(() => {
      chart(c1, { series: [{ x: h.ts, y: s.cohort_centre, color: "#dfe4ea", width: 1 }, { x: h.ts, y: s.baseline, color: "#7cb4ff", dash: [4, 3], width: 1 },
        { x: h.ts, y: s.value, color: "#2f9e5f", width: 2 }], bands: [{ x: h.ts, lo: s.band_low, hi: s.band_high, color: "#7cb4ff22" }] });
      chart(c2, { series: [{ x: h.ts, y: s.log_evidence, color: "#ff6b6f", width: 1.5 }], hlines: [{ y: d.threshold_log, color: "#e3a52a", label: "threshold" }] });
    });
  }
  box.append(legendLine([["#2f9e5f", "value"], ["#dfe4ea", "cohort centre"], ["#7cb4ff", "baseline ± 1 σ"], ["#ff6b6f", "log-evidence"]]));
  box.append(el("h3", {}, "Events that touched this shard"));
  if (!d.events.length) box.append(el("div", { class: "empty" }, "none"));
  for (const e of d.events) box.append(el("p", {}, `${e.kind} ${e.id}: ${fmtTs(e.freeze_start_ts)} → ${fmtTs(e.freeze_end_ts)}${e.frozen_now ? " (frozen now)" : ""}`));
  if (d.recent_firings && d.recent_firings.length) {
    box.append(el("h3", {}, "Recently resolved"));
    for (const f of d.recent_firings) box.append(el("p", { class: "muted" }, `${f.classification} · ${f.detector} ${f.metric || ""} · ${fmtTs(f.opened_ts)} → ${fmtTs(f.resolved_ts)}`));
  }
}

/* ------------------------------------------------------------------ events, sources, daemon */

function renderEvents() {
  const s = S.summary;
  if (!s) return;
  const evs = s.events || [];
  const list = $("events-list");
  list.textContent = "";
  if (!evs.length) list.append(el("div", { class: "empty" }, "No announced event (POST /v1/events or DeploySignal)."));
  else {
    const t = el("table", {}, el("tr", {}, ...["event", "kind", "scope", "freeze window", "shards", "now"].map((h) => el("th", {}, h))));
    for (const e of evs) {
      t.append(el("tr", {}, el("td", {}, e.id), el("td", {}, e.kind), el("td", {}, Array.isArray(e.scope) ? e.scope.join(", ") : String(e.scope)),
        el("td", {}, `${fmtTs(e.freeze_start_ts)} → ${fmtClock(e.freeze_end_ts)}`), el("td", {}, String(e.affected_shards)),
        el("td", {}, e.frozen_now ? "frozen" : "")));
    }
    list.append(t);
  }
  const tl = $("timeline");
  const now = s.window_end_ts || s.now;
  const series = [], vlines = [{ x: now, color: "#dfe4ea", label: "now" }];
  evs.forEach((e, k) => {
    series.push({ x: [e.freeze_start_ts, e.freeze_end_ts], y: [k + 1, k + 1], color: e.frozen_now ? "#8a6fe8" : "#6b7280", width: 6 });
    vlines.push({ x: e.ts, color: "#8a6fe8", label: e.kind });
  });
  if (!series.length) series.push({ x: [now - 1800, now], y: [0, 0], color: "#2a313b", width: 1 });
  chart(tl, { series, vlines, noY: true });
  const src = $("sources");
  src.textContent = "";
  const st = el("table", {}, el("tr", {}, ...["source", "state", "last poll", "polls ok / error", "last error"].map((h) => el("th", {}, h))));
  for (const x of s.sources) {
    st.append(el("tr", {}, el("td", {}, x.name), el("td", {}, el("span", { class: `chip ${x.up ? "ok" : "bad"}` }, x.up ? "up" : "down")),
      el("td", {}, x.last_success_ts ? `${fmtDur(s.now - x.last_success_ts)} ago` : "never"),
      el("td", {}, `${x.polls.success || 0} / ${(x.polls.error || 0) + (x.polls.timeout || 0)}`), el("td", {}, x.last_error || "")));
  }
  if (!s.sources.length) st.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "this process reads a stream (split mode): its agents poll the sources")));
  src.append(st);
  const dm = $("daemon");
  dm.textContent = "";
  const kv = el("dl", { class: "kv" });
  const add = (k, v) => kv.append(el("dt", {}, k), el("dd", {}, v));
  add("mode", s.mode); add("version", s.version); add("windows processed", String(s.windows_processed));
  add("last window", s.window >= 0 ? `${s.window} (${fmtTs(s.window_end_ts)})` : "–"); add("lag", `${fmtNum(s.lag_s, 1)} s`);
  add("shards × metrics", `${s.shards} × ${s.metrics.length}`); add("threshold (log)", fmtNum(s.threshold_log));
  add("warm-up", `${Math.round(s.warmup.fraction * 100)} %` + (s.warmup.eta_s ? `, about ${fmtDur(s.warmup.eta_s)} left` : ""));
  add("frames / late", `${s.frames} / ${s.late_frames}`); add("dropped frames", String(s.dropped_frames));
  add("dead letters", String(s.dead_letters)); add("frozen shards", String(s.frozen_shards));
  add("readiness", s.ready ? "ready" : s.not_ready.join("; "));
  dm.append(kv);
  const sp = s.split;
  $("split-panel").hidden = !sp;
  if (sp) {
    const box = $("split");
    box.textContent = "";
    box.append(el("p", {}, `worker ${sp.worker} holds ${sp.partitions.length} partition(s)`));
    const t = el("table", {}, el("tr", {}, ...["partition", "cohort", "shards", "window", "lag", "lease"].map((h) => el("th", {}, h))));
    for (const p of sp.partitions) t.append(el("tr", {}, el("td", {}, p.partition), el("td", {}, p.cohort), el("td", {}, String(p.shards)),
      el("td", {}, String(p.committed_window)), el("td", {}, String(p.lag_entries ?? "–")), el("td", {}, p.lease_valid ? "held" : "lost")));
    box.append(t);
    box.append(el("h3", {}, "Peers"));
    if (!sp.peers.length) box.append(el("div", { class: "empty" }, "no other live worker"));
    for (const peer of sp.peers) box.append(el("p", {}, peer.url ? el("a", { href: peer.url }, `${peer.worker} (${peer.url})`) : `${peer.worker}`));
  }
}

/* ------------------------------------------------------------------ scenarios */

async function showScenarios() {
  if (!S.scenarios) S.scenarios = await getJSON("/v1/scenarios");
  const d = S.scenarios;
  const now = $("scenario-now");
  now.textContent = "";
  if (d.current) {
    now.append(el("p", {}, el("strong", {}, d.current.name), ": ", d.current.injects));
    now.append(el("p", {}, "should find: ", d.current.expect));
    if (d.current.faults && d.current.faults.length) {
      const t = el("table", {}, el("tr", {}, ...["fault", "scope", "target", "metric", "from", "to"].map((h) => el("th", {}, h))));
      for (const f of d.current.faults) t.append(el("tr", {}, el("td", {}, f.kind), el("td", {}, f.scope), el("td", {}, f.target),
        el("td", {}, f.metric || ""), el("td", {}, fmtTs(f.start_ts)), el("td", {}, f.end_ts ? fmtClock(f.end_ts) : "end")));
      now.append(t);
    }
  } else now.append(el("p", { class: "muted" }, "Real sources: no simulated scenario."));
  const list = $("scenario-list");
  list.textContent = "";
  const t = el("table", {}, el("tr", {}, ...["scenario", "injects", "the daemon should find", "run it"].map((h) => el("th", {}, h))));
  for (const s of d.scenarios) t.append(el("tr", {}, el("td", {}, el("strong", {}, s.name)), el("td", {}, s.injects), el("td", {}, s.expect), el("td", {}, el("code", {}, s.command))));
  list.append(t);
}

/* test and bench hook: a shard's state as the map shows it, and the map pixel at its cell's centre */
T.probe = (shard, selector) => {
  const i = S.index ? S.index.get(shard) : undefined, g = S.geom;
  if (i == null || !g) return null;
  const code = (S.codes[selector || S.selector] || "")[i];
  const px = $("map").getContext("2d").getImageData(Math.round((g.x[i] + g.cell / 2) * g.dpr), Math.round((g.y[i] + g.cell / 2) * g.dpr), 1, 1).data;
  return { state: STATES[Number(code)], colour: COLOURS[Number(code)], rgb: [px[0], px[1], px[2]] };
};

/* ------------------------------------------------------------------ routing */

function route() {
  const h = decodeURIComponent(location.hash.replace(/^#\/?/, "")) || "fleet";
  const [view, ...rest] = h.split("/");
  const arg = rest.join("/");
  const known = ["fleet", "incidents", "incident", "shard", "events", "scenarios"];
  S.route = [known.includes(view) ? view : "fleet", arg];
  for (const v of known) $(`view-${v}`).hidden = v !== S.route[0];
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.view === S.route[0]);
  S.detail = null;
  const run = { incident: () => showIncident(arg), shard: () => showShard(arg), events: async () => renderEvents(),
    scenarios: () => showScenarios(), fleet: async () => { layoutMap(); scheduleDraw(); } }[S.route[0]];
  if (run) run().catch(report);
}

/* ------------------------------------------------------------------ live updates */

function connect() {
  const es = new EventSource("/v1/stream");
  es.addEventListener("hello", () => { $("ready").classList.remove("bad"); });
  es.addEventListener("resync", () => { Promise.all([loadFleet(), loadIncidents()]).then(() => scheduleDraw()).catch(report); });
  es.addEventListener("window", (ev) => {
    const d = JSON.parse(ev.data);
    const recv = Date.now();
    S.summary = d.summary;
    renderSummary();
    const jobs = [];
    if (S.topo && d.topology_key !== S.topo.key) jobs.push(loadTopology().then(loadFleet));
    else if (d.fleet_full) jobs.push(loadFleet());
    else if (d.fleet) applyFleetDiff(d.fleet);
    if (d.incidents_changed) jobs.push(loadIncidents());
    else if (S.incidents) {
      for (const g of S.incidents.groups) for (const f of g.firings) if (d.evidence[f.id] !== undefined) f.evidence_now = d.evidence[f.id];
      renderIncidents();
    }
    if (S.route[0] === "incident" && S.detail && S.detail.kind === "incident" && S.detail.data.incident.state === "open") jobs.push(showIncident(S.detail.id));
    Promise.all(jobs).then(() => scheduleDraw(() => {
      T.updates.push({ window: d.window, latencyMs: Date.now() - d.sent_ms, applyMs: Date.now() - recv, diff: !d.fleet_full });
      if (T.updates.length > 500) T.updates.shift();
    })).catch(report);
  });
  es.onerror = () => { $("ready").textContent = "reconnecting"; $("ready").className = "chip bad"; };
}

function report(err) {
  T.errors.push(String(err && err.message || err));
  console.warn("tessera console:", err);
}

async function main() {
  setupMap();
  window.addEventListener("hashchange", route);
  const [summary, topo, fleet, incidents] = await Promise.all(
    ["/v1/summary", "/v1/topology", "/v1/fleet", "/v1/incidents"].map(getJSON));
  T.fetchedMs = performance.now();
  await loadTopology(topo);
  T.laidOutMs = performance.now();
  await loadFleet(fleet.topology_key === topo.key ? fleet : undefined);
  await loadIncidents(incidents);
  S.summary = summary;
  renderSummary();
  route();
  T.routedMs = performance.now();
  scheduleDraw();
  connect();
}

main().catch(report);
