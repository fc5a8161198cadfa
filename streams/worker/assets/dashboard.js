"use strict";
// The dashboard's script (served from /assets/: the page's CSP runs no inline script).
// Every value shown comes from the worker's JSON API and is inserted as text (never as HTML),
// so a team or user called "<img onerror=…>" is shown, not run. No secrets are served by the API.
// Charts are drawn by uPlot (vendored in /assets/uplot.min.js, MIT): each chart's container
// carries data-points, the number of points it draws, for people and tests alike.
const REFRESH_MS = 10000;
const RANGE_SECONDS = {"1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000};
const RANGE_TEXT = {"1h": "last hour", "24h": "last 24 h", "7d": "last 7 days", "30d": "last 30 days"};
const COLORS = ["#3b6fd8", "#e07b39", "#2e8b57", "#9b59b6", "#c62f2f", "#17a2b8", "#c98a04", "#6b7385", "#8e6c4a"];
let range = "24h";
let stackBy = "team";
let series = new URLSearchParams(location.search).get("series");
const charts = {};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v;
    else if (k === "onclick") e.addEventListener("click", v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}
function fill(id, head, rows, emptyText) {
  const t = document.getElementById(id);
  t.replaceChildren();
  if (!rows.length) { t.append(el("tr", {}, el("td", {class: "empty"}, emptyText))); return; }
  if (head.length) t.append(el("tr", {}, ...head.map(([h, cls]) => el("th", cls ? {class: cls} : {}, h))));
  for (const r of rows) t.append(el("tr", {}, ...r.map(c => c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))));
}
const num = (x, cls = "num") => el("td", {class: cls}, x);
function usd(x) {
  if (x == null || !isFinite(x)) return "–";
  if (x === 0) return "$0";
  const a = Math.abs(x);
  const d = a >= 100 ? 0 : a >= 1 ? 2 : a >= 0.01 ? 3 : 4;
  return (x < 0 ? "−$" : "$") + a.toLocaleString(undefined, {minimumFractionDigits: d, maximumFractionDigits: d});
}
const tokens = x => x == null ? "–" : x >= 1e6 ? (x / 1e6).toFixed(1) + " M" : x >= 1e3 ? (x / 1e3).toFixed(1) + " k" : String(x);
const when = s => s ? new Date(typeof s === "number" ? s * 1000 : s).toLocaleString() : "–";
const clock = s => new Date(s * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
async function get(path) {
  const r = await fetch(path, {headers: {accept: "application/json"}, credentials: "same-origin"});
  if (r.status === 401) { location.assign("/login"); throw new Error("log in first"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || (path + ": HTTP " + r.status));
  // a worker that did not answer in time (docs/api.md, "Any worker answers"): said in the status line
  for (const m of body.complete === false ? body.missing || [] : []) for (const p of m.partitions || []) missing.add(p);
  return body;
}
const missing = new Set();
function seriesLink(name, label) {
  return el("a", {class: "series", href: "?series=" + encodeURIComponent(name), title: name,
    onclick: ev => { ev.preventDefault(); series = name; history.replaceState(null, "", "?series=" + encodeURIComponent(name)); loadSeries(); }}, label || name);
}

// -- charts ---------------------------------------------------------------------------------
// One uPlot per container, made again when its series change, else given the new data.
function plot(id, opts, data, points) {
  const box = document.getElementById(id);
  const width = Math.max(300, box.clientWidth || 600);
  const key = JSON.stringify(opts.series.map(s => s.label)) + "|" + (opts.key || "");
  let u = charts[id];
  if (u && u.tokenpulseKey === key) {
    u.tokenpulseOpts.markers = opts.markers;
    u.setData(data);
  } else {
    if (u) u.destroy();
    box.replaceChildren();
    u = new uPlot({width, height: opts.height || 220, ...opts}, data, box);
    u.tokenpulseKey = key;
    u.tokenpulseOpts = opts;
    charts[id] = u;
  }
  box.dataset.points = String(points);
  return u;
}
window.addEventListener("resize", () => {
  for (const [id, u] of Object.entries(charts)) {
    const box = document.getElementById(id);
    if (box && box.clientWidth) u.setSize({width: box.clientWidth, height: u.height});
  }
});
// Vertical lines where alerts started (red) and resolved (green): a uPlot draw hook.
function markerPlugin() {
  return {hooks: {draw: u => {
    const marks = (u.tokenpulseOpts && u.tokenpulseOpts.markers) || [];
    const ctx = u.ctx;
    ctx.save();
    for (const m of marks) {
      const x = Math.round(u.valToPos(m.at, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = m.state === "resolved" ? "#2e8b57" : "#c62f2f";
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    }
    ctx.restore();
  }}};
}
const usdAxis = {values: (u, vals) => vals.map(v => usd(v)), size: 70};

// The index of the first bucket with data (a new worker's 24 h are mostly before it started):
// the chart starts there, so the hours that exist fill it.
function firstWithData(columns, n) {
  for (let i = 0; i < n; i++) if (columns.some(c => c[i] != null && c[i] !== 0)) return Math.max(0, Math.min(i, n - 2));
  return 0;
}
async function loadTimeseries() {
  const body = await get(`/api/timeseries?by=${stackBy}&range=${range}`);
  const from = firstWithData(body.series.map(s => s.usd), body.t.length);
  const t = body.t.slice(from);
  // stacked: each line is the sum of itself and those below it; the legend shows its own value
  const raw = body.series.map(s => s.usd.slice(from));
  const stacked = [];
  let acc = t.map(() => 0);
  for (const r of raw) { acc = acc.map((a, i) => a + (r[i] || 0)); stacked.push(acc); }
  const order = body.series.map((_, i) => i).reverse();  // the top of the stack first, so lower fills cover it
  const opts = {
    key: stackBy + range,
    markers: body.alerts,
    plugins: [markerPlugin()],
    scales: {x: {time: true}},
    axes: [{}, usdAxis],
    series: [{}, ...order.map(i => ({
      label: body.series[i].name, stroke: COLORS[i % COLORS.length], fill: COLORS[i % COLORS.length] + "cc", width: 1,
      points: {show: false},
      value: (u, v, si, idx) => idx == null ? "–" : usd(raw[i][idx]),
    }))],
  };
  const data = [t, ...order.map(i => stacked[i])];
  const total = body.series.reduce((a, s) => a + s.total_usd, 0);
  document.getElementById("spend-sum").textContent = `${usd(total)} · ${RANGE_TEXT[range]} · by ${stackBy} · ${body.alerts.length} alert marker(s)`;
  plot("chart-spend", opts, data, body.series.length ? t.length * body.series.length : 0);
}

async function loadSeries() {
  if (!series) return;
  const name = document.getElementById("series-name");
  name.textContent = series;
  let data;
  try { data = await get("/api/windows?series=" + encodeURIComponent(series)); }
  catch (e) { name.textContent = series + " — " + e.message; document.getElementById("chart-series").dataset.points = "0"; return; }
  const rows = (data.series[series] || []);
  const pos = v => (v != null && v > 0 ? v : null);  // a log scale has no zero
  const t = rows.map(r => r.window_start);
  const opts = {
    key: series,
    scales: {x: {time: true}, y: {distr: 3}},
    axes: [{}, usdAxis],
    series: [{},
      {label: "observed", stroke: "#1d2330", width: 1.5, value: (u, v) => usd(v)},
      {label: "expected", stroke: "#3b6fd8", width: 1.5, value: (u, v) => usd(v)},
      {label: "alert bound", stroke: "#c98a04", dash: [6, 4], width: 1.5, value: (u, v) => usd(v)},
      {label: "anomalous", stroke: "#c62f2f", width: 0, points: {show: true, size: 7, fill: "#c62f2f"}, paths: () => null,
       value: (u, v) => usd(v)}],
  };
  plot("chart-series", opts, [t, rows.map(r => pos(r.observed_usd)), rows.map(r => pos(r.expected_usd)),
    rows.map(r => pos(r.upper_usd)), rows.map(r => (r.is_anomaly ? pos(r.observed_usd) : null))], rows.length);
  const last = rows[rows.length - 1];
  if (last) name.textContent = `${series} — last window ${usd(last.observed_usd)} (expected ${usd(last.expected_usd)}, ` +
    `alert bound ${usd(last.upper_usd)}), ${rows.length} windows`;
}

async function loadBurndown() {
  const {budgets} = await get("/api/burndown");
  const box = document.getElementById("burndowns");
  const ids = budgets.map((b, i) => "chart-budget-" + i);
  // one card per budget, kept across refreshes
  if (box.childElementCount !== budgets.length) {
    for (const id of Object.keys(charts)) if (id.startsWith("chart-budget-")) { charts[id].destroy(); delete charts[id]; }
    box.replaceChildren(...budgets.map((b, i) => el("div", {class: "burndown"},
      el("div", {class: "caption", id: ids[i] + "-caption"}), el("div", {class: "chart", id: ids[i], "data-points": "0"}))));
  }
  budgets.forEach((b, i) => {
    const fmt = v => b.unit === "usd" ? usd(v) : tokens(v) + " tok";
    const fc = b.forecast || {};
    const runsOut = fc.exhaustion_at ? "runs out " + when(fc.exhaustion_at) : "does not run out this period";
    document.getElementById(ids[i] + "-caption").replaceChildren(
      el("b", {}, b.budget), ` · ${b.period} ${b.period_id} (${b.tz}) · ${fmt(b.spent)} of ${fmt(b.limit)} (${b.pct_used.toFixed(1)} %) · ` +
      `forecast ${fmt(fc.projected_total)} · `, el("span", {class: fc.exhaustion_at ? "firing" : "resolved"}, runsOut));
    // x: the whole period; spent up to now, the forecast from now to the period's end
    const t = [b.period_start_ts, ...b.t, b.period_end_ts];
    const spent = [0, ...b.cumulative, null];
    const forecast = t.map(() => null);
    forecast[forecast.length - 2] = b.cumulative.length ? b.cumulative[b.cumulative.length - 1] : 0;
    forecast[forecast.length - 1] = fc.projected_total;
    const limit = t.map(() => b.limit);
    const lines = (b.thresholds || []).filter(p => p !== 100).map(p => t.map(() => b.limit * p / 100));
    const opts = {
      key: b.budget + b.period_id, height: 170,
      scales: {x: {time: true}, y: {range: (u, lo, hi) => [0, Math.max(hi, b.limit * 1.1)]}},
      axes: [{}, {values: (u, vals) => vals.map(v => fmt(v)), size: 70}],
      series: [{},
        {label: "spent", stroke: "#3b6fd8", width: 2, fill: "#3b6fd822", points: {show: false}, value: (u, v) => fmt(v)},
        {label: "forecast", stroke: "#c62f2f", dash: [6, 4], width: 1.5, spanGaps: true, points: {show: false}, value: (u, v) => fmt(v)},
        {label: "limit", stroke: "#1d2330", width: 1, points: {show: false}, value: (u, v) => fmt(v)},
        ...lines.map((_, k) => ({label: b.thresholds[k] + " %", stroke: "#c98a04", dash: [2, 3], width: 1, points: {show: false},
                                 value: (u, v) => fmt(v)}))],
    };
    plot(ids[i], opts, [t, spent, forecast, limit, ...lines], b.cumulative.length);
  });
  fill("budgets", [["budget"], ["used"], ["spent", "num"], ["limit", "num"], ["forecast", "num"], ["runs out"]],
    budgets.map(b => {
      const used = Math.min(100, b.pct_used);
      const color = b.pct_used >= 100 ? "var(--crit)" : b.pct_used >= 80 ? "var(--warn)" : "var(--ok)";
      const fmt = v => b.unit === "usd" ? usd(v) : Number(v).toLocaleString() + " tok";
      return [b.budget + " (" + b.period + ")",
        el("td", {class: "meter-cell"}, el("div", {class: "meter", title: b.pct_used.toFixed(1) + " %"},
          el("div", {style: `width:${used}%;background:${color}`})), el("span", {class: "muted"}, b.pct_used.toFixed(1) + " %")),
        num(fmt(b.spent)), num(fmt(b.limit)), num(fmt(b.forecast.projected_total)),
        b.forecast.exhaustion_at ? when(b.forecast.exhaustion_at) : "not this period"];
    }), "no budgets in the policy (see docs/dev-stack.md: the demo policy)");
}

async function loadInhouse() {
  const body = await get(`/api/inhouse?range=${range}`);
  document.getElementById("inhouse-sub").textContent = body.internal_models.length
    ? `${body.internal_models.join(", ")} · ${RANGE_TEXT[range]}` : "no mix.internal_models in the policy";
  const opts = {
    key: range,
    scales: {x: {time: true}, y: {range: [0, 100]}},
    axes: [{}, {values: (u, vals) => vals.map(v => v + " %"), size: 50}],
    series: [{}, ...body.teams.map((tm, i) => ({label: tm.team, stroke: COLORS[i % COLORS.length], width: 1.5,
      spanGaps: true, value: (u, v) => v == null ? "–" : v.toFixed(1) + " %"}))],
  };
  const points = body.teams.reduce((a, tm) => a + tm.pct.filter(v => v != null).length, 0);
  const from = firstWithData(body.teams.map(tm => tm.pct), body.t.length);
  plot("chart-inhouse", opts, [body.t.slice(from), ...body.teams.map(tm => tm.pct.slice(from))], points);
}

async function loadUsers() {
  const body = await get(`/api/top_users?range=${range}&limit=10`);
  document.getElementById("users-sub").textContent = `${RANGE_TEXT[range]} · ${body.users} users`;
  const row = u => [u.user, num(usd(u.usd)), num(u.usual_usd == null ? "new" : usd(u.usual_usd)),
    num(usd(u.excess_usd)), num(u.requests.toLocaleString()), num(tokens(u.input_tokens + u.output_tokens))];
  const head = [["user"], ["spend", "num"], ["usual", "num"], ["excess", "num"], ["requests", "num"], ["tokens", "num"]];
  fill("users-spend", head, body.by_spend.map(row), "no user spend in this range yet");
  fill("users-excess", head, body.by_excess.map(row), "no user spend in this range yet");
}

async function loadSpend() {
  const since = Math.floor(Date.now() / 1000) - RANGE_SECONDS[range];
  const [teams, models] = await Promise.all([
    get(`/api/spend?group_by=team&since=${since}`), get(`/api/spend?group_by=model&since=${since}`)]);
  const max = Math.max(1e-12, ...teams.rows.map(r => r.cost_usd));
  document.getElementById("spend-total").textContent = usd(teams.total.cost_usd) + " · " + teams.total.events.toLocaleString() + " requests · click a team for its series";
  document.getElementById("spend-range").textContent = RANGE_TEXT[range];
  fill("spend-team", [["team"], ["", ""], ["spend", "num"], ["requests", "num"]],
    // another org's team names its org (its series are org=<org>|team=<team>)
    teams.rows.slice(0, 30).map(r => [r.org ? seriesLink(`org=${r.org}|team=${r.team}`, `${r.team} (${r.org})`)
                                            : seriesLink("team=" + r.team, r.team),
      el("td", {class: "bar-cell"}, el("div", {class: "bar", style: `width:${(100 * r.cost_usd / max).toFixed(1)}%`})),
      num(usd(r.cost_usd)), num(r.events.toLocaleString())]), "no closed windows in this range yet");
  fill("spend-model", [["model"], ["spend", "num"], ["input tok", "num"], ["output tok", "num"]],
    models.rows.slice(0, 30).map(r => [r.model, num(usd(r.cost_usd)), num(r.input_tokens.toLocaleString()),
      num(r.output_tokens.toLocaleString())]), "no closed windows in this range yet");
}

// -- the dev inbox: Slack messages drawn as Slack draws them ---------------------------------
// Slack's mrkdwn, the part tokenpulse writes: *bold*, _italic_, `code`, <url|label> and the
// three escapes. Built from text nodes and elements: nothing in it is parsed as HTML.
function mrkdwn(text) {
  const frag = document.createDocumentFragment();
  const unescape = s => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  const re = /<@([A-Za-z0-9]+)>|<([^>|]+)\|([^>]*)>|\*([^*\n]+)\*|_([^_\n]+)_|`([^`\n]+)`/g;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) frag.append(unescape(text.slice(last, m.index)));
    if (m[1] !== undefined) frag.append(el("b", {class: "s-mention"}, "@" + m[1]));  // Slack shows the user's name
    else if (m[2] !== undefined) {
      const url = unescape(m[2]);
      frag.append(/^https?:\/\//.test(url) ? el("a", {href: url, rel: "noopener noreferrer"}, unescape(m[3])) : unescape(m[3]));
    } else if (m[4] !== undefined) frag.append(el("b", {}, unescape(m[4])));
    else if (m[5] !== undefined) frag.append(el("i", {}, unescape(m[5])));
    else frag.append(el("code", {}, unescape(m[6])));
    last = re.lastIndex;
  }
  if (last < text.length) frag.append(unescape(text.slice(last)));
  return frag;
}
function textOf(obj) {
  if (!obj) return document.createTextNode("");
  return obj.type === "mrkdwn" ? mrkdwn(String(obj.text || "")) : document.createTextNode(String(obj.text || ""));
}
// The answer buttons of a root message (tokenpulse dev): a press is signed by the worker's dev
// inbox and goes through the same handler as Slack's (POST /api/inbox/press).
async function press(message, actionId, button) {
  button.disabled = true;
  const note = button.parentElement.querySelector(".s-press-note");
  try {
    const r = await fetch("/api/inbox/press", {method: "POST", credentials: "same-origin",
      headers: {"content-type": "application/json", accept: "application/json"},
      body: JSON.stringify({channel: message.channel, ts: message.ts, action_id: actionId})});
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
    note.textContent = "sent: the worker applies it and rewrites the message";
    note.className = "s-press-note muted";
  } catch (e) {
    note.textContent = "not sent: " + e.message;
    note.className = "s-press-note error";
    button.disabled = false;
  }
  setTimeout(() => refresh(["inbox", "alerts", "answers"]), 1500);
}
function actionsBlock(b, message) {
  return el("div", {class: "s-actions"}, ...(b.elements || []).filter(e => e.type === "button").map(e => {
    const button = el("button", {class: "s-button" + (e.style === "primary" ? " primary" : ""), "data-action-id": e.action_id},
      textOf(e.text));
    if (message) button.addEventListener("click", () => press(message, e.action_id, button));
    else button.disabled = true;
    return button;
  }), el("span", {class: "s-press-note muted"}));
}
function blocks(message, pressable) {
  const out = [];
  for (const b of message.blocks || []) {
    if (b.type === "header") out.push(el("div", {class: "s-header"}, textOf(b.text)));
    else if (b.type === "section") {
      const parts = [];
      if (b.text) parts.push(el("div", {class: "s-text"}, textOf(b.text)));
      if (b.fields) parts.push(el("div", {class: "s-fields"}, ...b.fields.map(f => el("div", {}, textOf(f)))));
      out.push(el("div", {class: "s-section"}, ...parts));
    } else if (b.type === "context") out.push(el("div", {class: "s-context"}, ...(b.elements || []).map(e => el("span", {}, textOf(e)))));
    else if (b.type === "divider") out.push(el("hr", {class: "s-divider"}));
    else if (b.type === "actions") out.push(actionsBlock(b, pressable ? message : null));
  }
  if (!out.length) out.push(el("div", {class: "s-text"}, mrkdwn(String(message.text || ""))));
  return out;
}
function slackMessage(m, pressable) {
  const head = el("div", {class: "s-meta"}, el("b", {}, "tokenpulse"), el("span", {class: "muted"}, " " + clock(m.posted_at)),
    m.edited_at ? el("span", {class: "muted"}, " (edited " + clock(m.edited_at) + ")") : "");
  const card = el("div", {class: "s-message"}, head, ...blocks(m, pressable));
  if ((m.replies || []).length) {
    card.append(el("div", {class: "s-thread"}, el("div", {class: "muted"}, m.replies.length + (m.replies.length === 1 ? " reply" : " replies")),
      ...m.replies.map(r => el("div", {class: "s-reply"}, el("div", {class: "s-meta"}, el("b", {}, "tokenpulse"),
        el("span", {class: "muted"}, " " + clock(r.posted_at))), ...blocks(r)))));
  }
  return el("div", {class: "s-channel-msg"}, el("div", {class: "s-channel"}, m.channel), card);
}
async function loadInbox() {
  const body = await get("/api/inbox");
  const slack = document.getElementById("slack");
  const pd = document.getElementById("pagerduty");
  if (!body.enabled) {
    document.getElementById("inbox-note").textContent = "sent to the real receivers (see Receivers)";
    slack.replaceChildren(el("div", {class: "empty"}, "Slack and PagerDuty are configured: this worker has no dev inbox."));
    pd.replaceChildren();
    return;
  }
  document.getElementById("inbox-note").textContent = "the dev inbox: what Slack would show (no Slack token set)";
  slack.replaceChildren(...(body.slack.length ? body.slack.slice(0, 40).map(m => slackMessage(m, body.pressable))
    : [el("div", {class: "empty"}, "nothing posted yet: alerts show here as Slack would show them")]));
  pd.replaceChildren(...(body.pagerduty.length ? body.pagerduty.slice(0, 40).map(e => {
    const p = e.payload || {};
    return el("div", {class: "pd-event"},
      el("span", {class: "pill " + (e.event_action === "resolve" ? "ok" : (p.severity || "info"))}, e.event_action),
      " ", el("b", {}, p.summary || e.dedup_key), el("div", {class: "muted"},
        `${clock(e.received_at)} · severity ${p.severity || "–"} · dedup_key ${e.dedup_key}`));
  }) : [el("div", {class: "empty"}, "no pages yet (critical alerts page)")]));
}

function contributorsText(cs) {
  return (cs || []).slice(0, 3).map(c => `${c.kind} ${c.name} ${usd(c.usd)}` +
    (c.expected_usd != null ? ` (usually ${usd(c.expected_usd)})` : "")).join(", ");
}
// A row's numbers by kind: a spike's observed vs expected per window, a budget's spent of its
// limit (USD budgets), a third-party share's third-party spend vs its line, a report's total vs
// the period before.
function figures(a) {
  if (a.kind === "budget") return a.unit === "usd" ? [a.spent, a.limit, a.spent - a.limit] : [null, null, null];
  if (a.kind === "mix") {
    const allowed = a.line_pct / 100 * (a.third_party_usd + a.internal_usd);
    return [a.third_party_usd, allowed, a.third_party_usd - allowed];
  }
  if (a.kind === "report") { const t = (a.report || {}).total || {}; return [t.usd, t.prev_usd, t.change_usd]; }
  return [a.observed_usd, a.expected_usd, a.excess_usd];
}
// On-call's answers (Slack buttons): the action's label, who, when.
const ANSWER_TEXT = {tokenpulse_ack: "acknowledged", tokenpulse_new_normal: "new normal",
                     tokenpulse_not_anomaly: "not an anomaly", tokenpulse_snooze_4h: "snoozed 4 h",
                     tokenpulse_resolve: "resolved"};
function answersCell(fb) {
  if (!(fb || []).length) return el("td", {class: "muted"}, "–");
  return el("td", {class: "answers"}, ...fb.map(a => el("div", {class: "answer"},
    el("b", {}, ANSWER_TEXT[a.action] || a.action), ` by ${a.user || a.user_id || "?"}` +
      (a.source === "pagerduty" ? " in PagerDuty" : "") + `, ${when(a.at)}`)));
}
async function loadAnswers() {
  const body = await get("/api/feedback");
  const s = body.summary || {teams: []};
  const pct = x => x == null ? "–" : (100 * x).toFixed(0) + " %";
  document.getElementById("answers-sub").textContent = body.enabled
    ? `per team, alerts of the last ${s.days} days and how on-call answered them: precision = answered alerts that were not "not an anomaly"`
    : "no answer buttons (no Slack signing secret): alerts of the last 30 days only";
  fill("answers", [["team"], ["alerts", "num"], ["answered", "num"], ["acknowledged", "num"], ["new normal", "num"],
      ["not an anomaly", "num"], ["snoozed", "num"], ["precision", "num"]],
    s.teams.map(t => [(t.team == null ? "(org)" : t.team) + (t.org ? ` (${t.org})` : ""), num(t.alerts), num(t.answered), num(t.acknowledged),
      num(t.new_normal), num(t.not_anomaly), num(t.snoozed), num(pct(t.precision))]),
    "no alerts in the last 30 days");
}
function stateCell(a) {
  // acknowledged: by whom and since when; snoozed: until when (GET /api/alerts, docs/api.md#alert-states)
  const why = a.state === "snoozed" ? `until ${when(a.snoozed_until)}` + (a.snoozed_by ? ` (${a.snoozed_by})` : "")
    : a.state === "acknowledged" ? `by ${a.acknowledged_by || "?"}, ${when(a.acknowledged_at)}` : "";
  return el("td", {class: a.state}, a.state, ...(why ? [el("div", {class: "muted"}, why)] : []));
}
async function loadAlerts() {
  const {alerts} = await get("/api/alerts");
  // open ones (firing, acknowledged, snoozed) first, whoever answered them beside their state
  const open = alerts.filter(a => a.state !== "resolved");
  const resolved = alerts.filter(a => a.state === "resolved").slice(0, 15);
  fill("alerts", [["state"], ["severity"], ["series"], ["observed", "num"], ["expected", "num"], ["excess", "num"],
      ["incident", "num"], ["since"], ["top contributors"], ["delivery"], ["answers"]],
    [...open, ...resolved].map(a => [
      stateCell(a),
      el("td", {}, el("span", {class: "pill " + (a.severity || "info")}, a.severity || "info")),
      a.series ? seriesLink(a.series) : (a.key || ""),
      ...figures(a).map(x => num(usd(x))), num(usd(a.impact_usd)),
      when(a.started_at), contributorsText(a.top_contributors),
      Object.entries(a.delivery || {}).map(([s, d]) => `${s} ${d.ok ? "✓" : "…"}`).join(" "), answersCell(a.feedback)]),
    "no alerts: nothing is spending abnormally");
}

async function loadMix() {
  const {teams} = await get("/api/mix");
  fill("mix", [["team"], ["third-party share", "num"], ["change", "num"], ["internal", "num"], ["third-party", "num"]],
    (teams || []).map(t => [t.team, num(t.third_party_share_pct == null ? "–" : t.third_party_share_pct.toFixed(1) + " %"),
      num(t.change_pct_points == null ? "–" : (t.change_pct_points >= 0 ? "+" : "−") + Math.abs(t.change_pct_points).toFixed(1) + " pt"),
      num(usd(t.internal_usd)), num(usd(t.third_party_usd))]), "no spend in the last 7 days");
}

async function loadSinks() {
  const {sinks} = await get("/api/sinks");
  fill("sinks", [["receiver"], ["state"], ["failures", "num"], ["last error"], ["waiting", "num"]],
    (sinks || []).map(s => [s.sink, el("td", {class: s.up ? "resolved" : "firing"}, s.up ? "up" : "failing"),
      num(s.consecutive_failures ?? 0), s.last_error || "–", num(s.pending_notifications ?? 0)]),
    "no receivers configured (Slack, PagerDuty and webhook are off)");
}

async function loadPolicy() {
  const p = await get("/api/policy");
  const last = p.last_reload;
  const rows = [["file", p.path || "none (defaults)"], ["loaded", when(p.loaded_at)]];
  if (last) rows.push(["last reload", el("td", {class: last.ok ? "resolved" : "firing"},
    when(last.at) + (last.ok ? " — applied" : " — rejected, the running policy stays: " + (last.error || "")))]);
  if ((p.restart_required || []).length) rows.push(["needs a restart", p.restart_required.join(", ")]);
  fill("policy", [], rows, "");
}

async function loadIngest() {
  const st = await get("/api/status");
  const t = st.ingest_totals || {};
  const n = k => num((t[k] || 0).toLocaleString());
  const warn = k => el("td", {class: "num" + ((t[k] || 0) > 0 ? " firing" : "")}, (t[k] || 0).toLocaleString());
  fill("ingest", [["events"], ["count", "num"], [""]], [
    ["counted", n("accepted"), "in spend (late ones included)"],
    ["duplicates", n("duplicate"), "an event_id already counted"],
    ["late", n("late"), "after their window closed: in spend, not judged"],
    ["rejected", warn("rejected"), "not a usage event: in the dead-letter topic"],
    ["quarantined", warn("implausible"), "over the policy's limits: in the dead-letter topic, not in spend"],
    ["errors", warn("failed"), "an error of tokenpulse's own: in the dead-letter topic"],
  ], "");
}

const PARTS = {spend: loadSpend, timeseries: loadTimeseries, inbox: loadInbox, alerts: loadAlerts, answers: loadAnswers,
               series: loadSeries,
               budgets: loadBurndown, inhouse: loadInhouse, users: loadUsers, mix: loadMix, receivers: loadSinks,
               policy: loadPolicy, ingest: loadIngest};
async function refresh(names) {
  const failed = [];
  missing.clear();
  await Promise.all((names || Object.keys(PARTS)).map(name => PARTS[name]().catch(e => failed.push(name + ": " + e.message))));
  const s = document.getElementById("status");
  const gap = missing.size ? "partitions " + [...missing].sort((a, b) => a - b).join(", ") + " did not answer · " : "";
  s.textContent = (failed.length ? "partly updated (" + failed.join("; ") + ") · " : "updated ") + gap + new Date().toLocaleTimeString();
  s.className = "status" + (failed.length || gap ? " error" : "");
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}
function choose(groupId, attr, value) {
  for (const o of document.querySelectorAll(`#${groupId} button`)) o.classList.toggle("on", o.dataset[attr] === value);
}
for (const b of document.querySelectorAll("#ranges button")) b.addEventListener("click", () => {
  range = b.dataset.range; choose("ranges", "range", range);
  refresh(["spend", "timeseries", "inhouse", "users"]);
});
for (const b of document.querySelectorAll("#stack-by button")) b.addEventListener("click", () => {
  stackBy = b.dataset.by; choose("stack-by", "by", stackBy);
  refresh(["timeseries"]);
});
choose("ranges", "range", range);
choose("stack-by", "by", stackBy);
refresh();
setInterval(refresh, REFRESH_MS);
