"use strict";
// Every value shown comes from the worker's JSON API and is inserted as text (never as HTML),
// so a team or user called "<img onerror=…>" is shown, not run. No secrets are served by the API.
const REFRESH_MS = 10000;
let range = 86400;
let series = new URLSearchParams(location.search).get("series");

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
const when = s => s ? new Date(typeof s === "number" ? s * 1000 : s).toLocaleString() : "–";
async function get(path) {
  const r = await fetch(path, {headers: {accept: "application/json"}});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || (path + ": HTTP " + r.status));
  return body;
}
function seriesLink(name, label) {
  return el("a", {class: "series", href: "?series=" + encodeURIComponent(name), title: name,
    onclick: ev => { ev.preventDefault(); series = name; history.replaceState(null, "", "?series=" + encodeURIComponent(name)); loadSeries(); }}, label || name);
}

async function loadSpend() {
  const since = Math.floor(Date.now() / 1000) - range;
  const [teams, models] = await Promise.all([
    get(`/api/spend?group_by=team&since=${since}`), get(`/api/spend?group_by=model&since=${since}`)]);
  const max = Math.max(1e-12, ...teams.rows.map(r => r.cost_usd));
  document.getElementById("spend-total").textContent = usd(teams.total.cost_usd) + " · " + teams.total.events.toLocaleString() + " requests";
  document.getElementById("spend-range").textContent = "last " + {3600: "hour", 86400: "24 h", 604800: "7 days"}[range];
  fill("spend-team", [["team"], ["", ""], ["spend", "num"], ["requests", "num"]],
    teams.rows.slice(0, 30).map(r => [seriesLink("team=" + r.team, r.team),
      el("td", {style: "width:40%"}, el("div", {class: "bar", style: `width:${(100 * r.cost_usd / max).toFixed(1)}%`})),
      num(usd(r.cost_usd)), num(r.events.toLocaleString())]), "no closed windows in this range yet");
  fill("spend-model", [["model"], ["spend", "num"], ["input tok", "num"], ["output tok", "num"]],
    models.rows.slice(0, 30).map(r => [r.model, num(usd(r.cost_usd)), num(r.input_tokens.toLocaleString()),
      num(r.output_tokens.toLocaleString())]), "no closed windows in this range yet");
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
async function loadAlerts() {
  const {alerts} = await get("/api/alerts");
  const firing = alerts.filter(a => a.state === "firing");
  const resolved = alerts.filter(a => a.state !== "firing").slice(0, 15);
  fill("alerts", [["state"], ["severity"], ["series"], ["observed", "num"], ["expected", "num"], ["excess", "num"],
      ["incident", "num"], ["since"], ["top contributors"], ["delivery"]],
    [...firing, ...resolved].map(a => [
      el("td", {class: a.state}, a.state),
      el("td", {}, el("span", {class: "pill " + (a.severity || "info")}, a.severity || "info")),
      a.series ? seriesLink(a.series) : (a.key || ""),
      ...figures(a).map(x => num(usd(x))), num(usd(a.impact_usd)),
      when(a.started_at), contributorsText(a.top_contributors),
      Object.entries(a.delivery || {}).map(([s, d]) => `${s} ${d.ok ? "✓" : "…"}`).join(" ")]),
    "no alerts: nothing is spending abnormally");
}

async function loadSeries() {
  const svg = document.getElementById("chart");
  if (!series) return;
  document.getElementById("series-name").textContent = series;
  let data;
  try { data = await get("/api/windows?series=" + encodeURIComponent(series)); }
  catch (e) { svg.replaceChildren(); document.getElementById("series-name").textContent = series + " — " + e.message; return; }
  const rows = (data.series[series] || []);
  const W = 800, H = 180, pad = 6;
  const top = Math.max(1e-9, ...rows.map(r => Math.max(r.observed_usd, r.upper_usd || 0)));
  const x = i => pad + (W - 2 * pad) * (rows.length < 2 ? 0.5 : i / (rows.length - 1));
  const y = v => H - pad - (H - 2 * pad) * Math.min(1, Math.max(0, v / top));
  const NS = "http://www.w3.org/2000/svg";
  const line = (key, color, dash) => {
    const p = document.createElementNS(NS, "polyline");
    p.setAttribute("points", rows.map((r, i) => `${x(i).toFixed(1)},${y(r[key] || 0).toFixed(1)}`).join(" "));
    p.setAttribute("fill", "none"); p.setAttribute("stroke", color); p.setAttribute("stroke-width", "1.5");
    if (dash) p.setAttribute("stroke-dasharray", "4 3");
    return p;
  };
  const dots = rows.map((r, i) => {
    if (!r.is_anomaly) return null;
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", x(i)); c.setAttribute("cy", y(r.observed_usd)); c.setAttribute("r", 3); c.setAttribute("fill", "#c62f2f");
    return c;
  }).filter(Boolean);
  svg.replaceChildren(line("upper_usd", "#c98a04", true), line("expected_usd", "#3b6fd8"), line("observed_usd", "#1d2330"), ...dots);
  const last = rows[rows.length - 1];
  if (last) document.getElementById("series-name").textContent =
    `${series} — last window ${usd(last.observed_usd)} (expected ${usd(last.expected_usd)}), peak of the chart ${usd(top)}`;
}

async function loadBudgets() {
  const {budgets} = await get("/api/budgets");
  fill("budgets", [["budget"], ["used"], ["spent", "num"], ["limit", "num"], ["forecast", "num"], ["exhausted"]],
    budgets.map(b => {
      const used = Math.min(100, b.pct_used);
      const color = b.pct_used >= 100 ? "var(--crit)" : b.pct_used >= 80 ? "var(--warn)" : "var(--ok)";
      const fmt = v => b.unit === "usd" ? usd(v) : Number(v).toLocaleString() + " tok";
      return [b.budget + " (" + b.period + ")",
        el("td", {style: "width:28%"}, el("div", {class: "meter", title: b.pct_used.toFixed(1) + " %"},
          el("div", {style: `width:${used}%;background:${color}`})), el("span", {class: "muted"}, b.pct_used.toFixed(1) + " %")),
        num(fmt(b.spent)), num(fmt(b.limit)), num(fmt(b.forecast.projected_total)),
        b.forecast.exhaustion_at ? when(b.forecast.exhaustion_at) : "not this period"];
    }), "no budgets in the policy (see README: budgets)");
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

async function refresh() {
  const parts = {spend: loadSpend, alerts: loadAlerts, series: loadSeries, budgets: loadBudgets, mix: loadMix,
                 receivers: loadSinks, policy: loadPolicy, ingest: loadIngest};
  const failed = [];
  await Promise.all(Object.entries(parts).map(([name, f]) => f().catch(e => failed.push(name + ": " + e.message))));
  const s = document.getElementById("status");
  s.textContent = (failed.length ? "partly updated (" + failed.join("; ") + ") · " : "updated ") + new Date().toLocaleTimeString();
  s.className = "status" + (failed.length ? " error" : "");
}
for (const b of document.querySelectorAll("button.range")) b.addEventListener("click", () => {
  range = Number(b.dataset.range);
  for (const o of document.querySelectorAll("button.range")) o.classList.toggle("on", o === b);
  loadSpend().catch(() => {});
});
refresh();
setInterval(refresh, REFRESH_MS);
