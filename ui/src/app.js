// Gust's dashboard: a view over the same /v1 API the CLI uses (docs/API.md); it reads,
// and spawns calls.
// The page holds no data itself: every list comes from a fetch with the token the user
// pasted, kept in sessionStorage (never a cookie, so no request carries it unasked and
// there is nothing for a cross-site request to ride on; docs/SECURITY.md).
import { h, render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./style.css";

const html = htm.bind(h);
const TOKEN_KEY = "gust.token";
// How often lists refresh (ms): about what `watch gust ls` gives, cheap for gustd.
const REFRESH_MS = 2000;
// Log lines kept on screen while following: enough to read, bounded for a long follow.
const MAX_LOG_LINES = 2000;

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// A request to an API path with the token (opts: method, body, contentType, noLogout);
// its JSON answer, or an ApiError. A 401 logs out.
async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (opts.contentType) headers["Content-Type"] = opts.contentType;
  const r = await fetch(path, { method: opts.method || "GET", body: opts.body, headers });
  if (r.status === 401 && !opts.noLogout) {
    sessionStorage.removeItem(TOKEN_KEY);
    window.dispatchEvent(new Event("gust-logout"));
  }
  if (!r.ok) {
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON: the status says it */ }
    throw new ApiError(r.status, body);
  }
  return r.json();
}

// State of a path fetched now and every REFRESH_MS: [data, error].
function usePoll(path, deps = []) {
  const [data, setData] = useState(null);
  const [err, setErr] = useState(null);
  useEffect(() => {
    let live = true;
    let timer = null;
    const tick = async () => {
      try {
        const d = await api(path);
        if (live) { setData(d); setErr(null); }
      } catch (e) {
        if (live) setErr(e.message);
      }
      if (live) timer = setTimeout(tick, REFRESH_MS);
    };
    tick();
    return () => { live = false; clearTimeout(timer); };
  }, [path, ...deps]);
  return [data, err];
}

const enc = encodeURIComponent;
const fmtTime = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "–");
const fmtUs = (us) => (us == null ? "–" : us < 1000 ? `${us} µs` : us < 1e6 ? `${(us / 1000).toFixed(1)} ms` : `${(us / 1e6).toFixed(2)} s`);
const fmtMiB = (b) => (b == null ? "–" : `${(b / 1048576).toFixed(1)} MiB`);
const fmtCost = (c) => (c == null ? "–" : `$${c.toFixed(6)}`);

function Err({ msg }) {
  return msg ? html`<p class="error" role="alert">${msg}</p>` : null;
}

function Table({ cols, rows, empty, testid }) {
  if (!rows) return html`<p class="muted">loading…</p>`;
  if (!rows.length) return html`<p class="muted" data-testid=${testid ? testid + "-empty" : null}>${empty}</p>`;
  return html`<table data-testid=${testid}>
    <thead><tr>${cols.map((c) => html`<th>${c[0]}</th>`)}</tr></thead>
    <tbody>${rows.map((r) => html`<tr>${cols.map((c) => html`<td>${c[1](r)}</td>`)}</tr>`)}</tbody>
  </table>`;
}

function Login({ onLogin }) {
  const [val, setVal] = useState("");
  const [err, setErr] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, val.trim());
    try {
      const who = await api("/v1/whoami", { noLogout: true });
      onLogin(who);
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      setErr(e.message);
    }
  };
  return html`<form class="login" onSubmit=${submit}>
    <h1>Gust</h1>
    <label for="token">API token</label>
    <input id="token" type="password" autocomplete="off" value=${val}
      onInput=${(e) => setVal(e.target.value)} placeholder="paste a token (gust token create, or <data-dir>/admin.token)" />
    <button type="submit">Log in</button>
    <${Err} msg=${err} />
    <p class="muted">The token stays in this tab (sessionStorage) and is sent only to this gustd.</p>
  </form>`;
}

function fnState(f, apps) {
  const app = apps && apps.find((a) => a.name === f.app);
  if (app && app.state === "stopped") return "stopped";
  const c = f.containers || {};
  if (f.waiting_reason) return "waiting";
  if ((c.busy || 0) > 0) return "running";
  if ((c.starting || 0) > 0) return "starting";
  if ((c.idle || 0) > 0) return "idle";
  return "scaled to zero";
}

function Functions() {
  const [fns, err] = usePoll("/v1/functions");
  const [apps] = usePoll("/v1/apps");
  const byApp = {};
  for (const f of (fns && fns.functions) || []) (byApp[f.app] = byApp[f.app] || []).push(f);
  const names = Object.keys(byApp).sort();
  return html`<section>
    <h2>Apps and functions</h2>
    <${Err} msg=${err} />
    ${fns && !names.length && html`<p class="muted" data-testid="functions-empty">No functions deployed in this workspace.</p>`}
    ${names.map((app) => html`<div class="app" data-testid="app">
      <h3>${app} <span class="muted">${(apps && (apps.apps.find((a) => a.name === app) || {}).state) || ""}</span></h3>
      <${Table} testid="functions" rows=${byApp[app]} cols=${[
        ["Function", (f) => html`<a href=${`#/fn/${enc(f.app)}/${enc(f.name)}`} data-testid="fn-link">${f.name}</a>`],
        ["Version", (f) => f.version],
        ["State", (f) => fnState(f, apps && apps.apps)],
        ["Containers", (f) => `${f.containers.starting} starting, ${f.containers.idle} idle, ${f.containers.busy} busy`],
        ["Queue", (f) => `${f.queued} queued, ${f.running} running`],
        ["Waiting reason", (f) => f.waiting_reason || "–"],
        ["URL", (f) => (f.web_url ? html`<a href=${f.web_url}>${f.web_url}</a>` : "–")],
      ]} />
    </div>`)}
  </section>`;
}

// Streams GET .../logs?follow=1 (text/plain, a line each) into state until unmounted.
function LiveLogs({ app, fn }) {
  const [lines, setLines] = useState([]);
  const [state, setState] = useState("connecting");
  useEffect(() => {
    const ctl = new AbortController();
    (async () => {
      try {
        const r = await fetch(`/v1/functions/${enc(app)}/${enc(fn)}/logs?follow=1&tail=100`, {
          headers: { Authorization: `Bearer ${token()}` }, signal: ctl.signal });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        setState("following");
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let rest = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          rest += value;
          const parts = rest.split("\n");
          rest = parts.pop();
          if (parts.length) setLines((old) => old.concat(parts).slice(-MAX_LOG_LINES));
        }
        setState("ended");
      } catch (e) {
        if (!ctl.signal.aborted) setState(`error: ${e.message}`);
      }
    })();
    return () => ctl.abort();
  }, [app, fn]);
  return html`<div>
    <h3>Logs <span class="muted" data-testid="log-state">${state}</span></h3>
    <pre class="logs" data-testid="logs">${lines.join("\n")}</pre>
  </div>`;
}

// Spawns a call with the bytes typed (POST .../spawn, as `gust spawn`): the call then
// shows in the list below with its timeline. A POST carries the page's Origin, which
// gustd accepts as its own (docs/SECURITY.md "The dashboard").
function CallForm({ app, fn }) {
  const [input, setInput] = useState("");
  const [msg, setMsg] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    try {
      const r = await api(`/v1/functions/${enc(app)}/${enc(fn)}/spawn`, {
        method: "POST", body: input, contentType: "application/octet-stream" });
      setMsg(html`spawned <a href=${`#/call/${enc(r.call_id)}`} data-testid="spawned">${r.call_id}</a>`);
    } catch (e) {
      setMsg(html`<span class="error">${e.message}</span>`);
    }
  };
  return html`<form class="callform" onSubmit=${submit}>
    <input id="call-input" value=${input} onInput=${(e) => setInput(e.target.value)}
      placeholder="input bytes (a Python function takes \0GUSTJSON1 JSON: use gust call)" />
    <button type="submit">Spawn call</button>
    <span data-testid="call-msg">${msg}</span>
  </form>`;
}

function FunctionPage({ app, fn }) {
  const [f, err] = usePoll(`/v1/functions/${enc(app)}/${enc(fn)}`);
  const [calls, cerr] = usePoll(`/v1/functions/${enc(app)}/${enc(fn)}/calls?limit=50`);
  return html`<section>
    <h2>${app}.${fn}</h2>
    <${Err} msg=${err || cerr} />
    ${f && html`<dl class="facts">
      <dt>Version</dt><dd>${f.version}</dd>
      <dt>Image</dt><dd>${f.image}</dd>
      <dt>Kind</dt><dd>${f.kind}</dd>
      <dt>Queue</dt><dd>${f.queued} queued, ${f.running} running</dd>
      <dt>Containers</dt><dd>${f.containers.starting} starting, ${f.containers.idle} idle, ${f.containers.busy} busy</dd>
      <dt>Waiting reason</dt><dd>${f.waiting_reason || "–"}</dd>
      ${f.web_url && html`<dt>URL</dt><dd>${f.web_url}</dd>`}
    </dl>`}
    <h3>Call</h3>
    <${CallForm} app=${app} fn=${fn} />
    <h3>Recent calls</h3>
    <${Table} testid="calls" rows=${calls && calls.calls} empty="No calls yet." cols=${[
      ["Call", (c) => html`<a href=${`#/call/${enc(c.call_id)}`} data-testid="call-link">${c.call_id}</a>`],
      ["Status", (c) => html`<span class=${"st-" + c.status}>${c.status}</span>`],
      ["Version", (c) => c.version],
      ["Submitted", (c) => fmtTime(c.created_at)],
      ["Elapsed", (c) => fmtUs(c.timeline && c.timeline.elapsed_us)],
      ["Attempts", (c) => c.attempts],
    ]} />
    <${LiveLogs} app=${app} fn=${fn} />
  </section>`;
}

// One bar per phase of the timeline, placed on a shared µs axis from the submit.
function Timeline({ t }) {
  if (!t) return html`<p class="muted">No timeline (the call finished before gustd kept them).</p>`;
  const bars = [];
  const cs = t.container_start;
  if (cs) bars.push(["container start", cs.started_us, cs.ready_us, "start"]);
  let prev = 0;
  (t.attempts || []).forEach((a, i) => {
    if (a.dispatched_us > prev) bars.push([i ? "requeued" : "queued", prev, a.dispatched_us, "queued"]);
    const end = a.ended_us == null ? t.elapsed_us : a.ended_us;
    bars.push([`attempt ${i + 1} on ${a.container ? a.container.id : "?"}${a.container && a.container.cold ? " (cold)" : ""}`,
      a.dispatched_us, end, "run"]);
    prev = end;
  });
  const lo = Math.min(0, ...bars.map((b) => b[1]));
  const hi = Math.max(t.elapsed_us, ...bars.map((b) => b[2]), 1);
  const pct = (v) => `${((100 * (v - lo)) / (hi - lo)).toFixed(2)}%`;
  return html`<div class="timeline" data-testid="timeline">
    <p>Elapsed ${fmtUs(t.elapsed_us)}: queued ${fmtUs(t.queued_us)}, running ${fmtUs(t.running_us)}; first output at ${fmtUs(t.first_output_us)}; ${t.attempts_total} attempt(s).</p>
    ${bars.map((b) => html`<div class="tl-row" data-testid="timeline-bar">
      <span class="tl-label">${b[0]}</span>
      <span class="tl-track"><span class=${"tl-bar tl-" + b[3]} style=${{ left: pct(b[1]), width: `max(2px, calc(${pct(b[2])} - ${pct(b[1])}))` }}></span></span>
      <span class="tl-dur">${fmtUs(b[2] - b[1])}</span>
    </div>`)}
    ${cs && cs.start_breakdown_us && html`<p class="muted">Sandbox start: ${Object.entries(cs.start_breakdown_us).map(([k, v]) => `${k} ${fmtUs(v)}`).join(", ")}</p>`}
  </div>`;
}

function CallPage({ id }) {
  const [c, err] = usePoll(`/v1/calls/${enc(id)}/status`);
  return html`<section>
    <h2>Call ${id}</h2>
    <${Err} msg=${err} />
    ${c && html`<div>
      <dl class="facts">
        <dt>Function</dt><dd><a href=${`#/fn/${enc(c.app)}/${enc(c.function)}`}>${c.app}.${c.function}</a> v${c.version}</dd>
        <dt>Status</dt><dd data-testid="call-status">${c.status}</dd>
        <dt>Attempts</dt><dd>${c.attempts}</dd>
        <dt>Submitted</dt><dd>${fmtTime(c.created_at)}</dd>
        <dt>Output</dt><dd>${c.output_size == null ? "–" : `${c.output_size} bytes`}</dd>
        ${c.error && html`<dt>Error</dt><dd class="error">${c.error.code}: ${c.error.message}</dd>`}
      </dl>
      <h3>Timeline</h3>
      <${Timeline} t=${c.timeline} />
    </div>`}
  </section>`;
}

function Containers() {
  const [d, err] = usePoll("/v1/containers");
  return html`<section>
    <h2>Containers</h2>
    <${Err} msg=${err} />
    <${Table} testid="containers" rows=${d && d.containers} empty="No containers running." cols=${[
      ["Container", (c) => c.id],
      ["Function", (c) => `${c.app}.${c.function} v${c.version}`],
      ["State", (c) => c.state],
      ["In flight / done", (c) => `${c.inputs_in_flight} / ${c.inputs_done}`],
      ["CPU used", (c) => (c.cpu_s == null ? "–" : `${c.cpu_s.toFixed(2)} s`)],
      ["Memory", (c) => `${fmtMiB(c.memory_bytes)} (peak ${fmtMiB(c.memory_peak_bytes)})`],
      ["GPU", (c) => ((c.gpus || []).length ? `${c.gpus.join(", ")}${c.gpu_util_pct != null ? ` ${c.gpu_util_pct}%` : ""}` : "–")],
      ["Started", (c) => fmtTime(c.started_at)],
    ]} />
  </section>`;
}

// A uPlot bar chart of one series per label: labels on the x axis, values on y.
// Tick values short enough for the axis: costs can be millionths of a dollar.
const fmtTick = (v) => (v === 0 ? "0" : Math.abs(v) >= 0.01 ? String(+v.toFixed(3)) : v.toExponential(1));

function BarChart({ title, labels, series, xLabel = "function", yLabel, yMax, testid }) {
  const ref = useRef(null);
  useEffect(() => {
    if (!ref.current || !labels.length) return undefined;
    const xs = labels.map((_, i) => i);
    const colors = ["#3b6fd8", "#e0812b", "#2a9d6a"];
    const bars = uPlot.paths.bars({ size: [0.6 / series.length, 60], align: 0 });
    const opts = {
      title,
      width: Math.min(900, ref.current.clientWidth || 800),
      height: 260,
      legend: { show: false },
      scales: {
        x: { time: false, range: [-0.5, labels.length - 0.5] },
        y: { range: (u, lo, hi) => [0, yMax != null ? yMax : hi > 0 ? hi * 1.1 : 1] },
      },
      axes: [
        { label: xLabel, values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? labels[t] || "" : "")), splits: () => xs },
        { label: yLabel, size: 80, values: (u, ticks) => ticks.map(fmtTick) },
      ],
      series: [{}, ...series.map((s, i) => ({ label: s.label, fill: colors[i % 3] + "aa", stroke: colors[i % 3], paths: bars, points: { show: false } }))],
    };
    const u = new uPlot(opts, [xs, ...series.map((s) => s.values)], ref.current);
    return () => u.destroy();
  }, [JSON.stringify([labels, series])]);
  return html`<div class="chart" data-testid=${testid} ref=${ref}></div>`;
}

// Days (UTC) the cost-per-day plot shows: a week, 8 small requests.
const COST_DAYS = 7;
// Samples of the live utilization plot: 30 minutes at one per REFRESH_MS.
const UTIL_SAMPLES = 900;

// Cost per UTC day over the last COST_DAYS days. /v1/usage has totals only, but with
// ?since=T it counts each container's reserved time from T on, so the cost of day
// [a, b) is usage(since=a) - usage(since=b): the same numbers `gust usage --since` gives.
function CostPerDay() {
  const [days, setDays] = useState(null);
  const [err, setErr] = useState(null);
  useEffect(() => {
    let live = true;
    const today = Math.floor(Date.now() / 86400000) * 86400;
    const starts = [];
    for (let k = COST_DAYS - 1; k >= 0; k--) starts.push(today - k * 86400);
    Promise.all(starts.map((t) => api(`/v1/usage?since=${t}`))).then((us) => {
      if (!live) return;
      const totals = us.map((u) => u.total_cost);
      setDays(starts.map((t, i) => ({
        label: new Date(t * 1000).toISOString().slice(5, 10),
        cost: Math.max(0, totals[i] - (i + 1 < totals.length ? totals[i + 1] : 0)),
      })));
    }, (e) => live && setErr(e.message));
    return () => { live = false; };
  }, []);
  if (err) return html`<${Err} msg=${err} />`;
  if (!days) return null;
  return html`<${BarChart} testid="day-chart" title="Cost per day (UTC, $)" labels=${days.map((d) => d.label)}
    xLabel="day (UTC)" yLabel="cost ($)" series=${[{ label: "cost", values: days.map((d) => d.cost) }]} />`;
}

// Allocation utilization over time, sampled from /v1/containers while the page is open:
// the share of live containers that are busy (what usage's "utilization" integrates).
function UtilizationLive() {
  const ref = useRef(null);
  const plot = useRef(null);
  const [d] = usePoll("/v1/containers");
  const samples = useRef([[], [], []]);
  useEffect(() => {
    if (!d) return;
    const cs = d.containers;
    const busy = cs.filter((c) => c.state === "busy").length;
    const s = samples.current;
    s[0].push(Date.now() / 1000);
    s[1].push(cs.length ? (100 * busy) / cs.length : null);
    s[2].push(cs.length);
    if (s[0].length > UTIL_SAMPLES) s.forEach((a) => a.shift());
    // Drawn from the second sample on: uPlot cannot scale a time axis on one point.
    if (!plot.current && ref.current && s[0].length >= 2) {
      plot.current = new uPlot({
        title: "Allocation utilization over time (busy ÷ live containers, while this page is open)",
        width: Math.min(900, ref.current.clientWidth || 800), height: 240, legend: { show: false },
        // At least a minute wide: a first sample alone would make an empty time range.
        scales: { x: { range: (u, lo, hi) => [Math.min(lo, hi - 60), hi] }, y: { range: [0, 100] }, n: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
        axes: [{ label: "time" }, { label: "busy (%)", size: 60 }, { label: "containers", scale: "n", side: 1, size: 60 }],
        series: [{}, { label: "busy %", stroke: "#3b6fd8", width: 2, spanGaps: false },
          { label: "containers", scale: "n", stroke: "#e0812b", width: 1, dash: [4, 4] }],
      }, s, ref.current);
    } else if (plot.current) {
      plot.current.setData(s);
    }
  }, [d]);
  useEffect(() => () => plot.current && plot.current.destroy(), []);
  return html`<div class="chart" data-testid="util-live-chart" ref=${ref}>${!plot.current && html`<p class="muted">sampling…</p>`}</div>`;
}

function Usage() {
  const [d, err] = usePoll("/v1/usage");
  const rows = [];
  for (const a of (d && d.apps) || []) for (const f of a.functions) rows.push({ app: a.app, ...f });
  const labels = rows.map((r) => `${r.app}.${r.function}`);
  return html`<section>
    <h2>Usage</h2>
    <${Err} msg=${err} />
    ${d && html`<p>Total cost: <b data-testid="total-cost">${fmtCost(d.total_cost)}</b>
      <span class="muted"> (rates: CPU core-s $${d.rates.cpu_core_s}, memory GiB-s $${d.rates.memory_gib_s})</span></p>`}
    <${CostPerDay} />
    <${UtilizationLive} />
    ${rows.length ? html`<div>
      <${BarChart} testid="cost-chart" title="Cost per function ($)" labels=${labels} yLabel="cost ($)"
        series=${[{ label: "cost", values: rows.map((r) => r.cost) }]} />
      <${BarChart} testid="util-chart" title="Allocation utilization (busy ÷ alive container-seconds)" labels=${labels}
        yLabel="utilization (%)" yMax=${100}
        series=${[{ label: "utilization", values: rows.map((r) => (r.utilization == null ? null : 100 * r.utilization)) }]} />
    </div>` : d && html`<p class="muted">No usage yet.</p>`}
    <${Table} testid="usage" rows=${d ? rows : null} empty="" cols=${[
      ["Function", (r) => `${r.app}.${r.function}`],
      ["Calls", (r) => r.calls],
      ["Containers", (r) => r.containers],
      ["Alive / busy", (r) => `${r.alive_s.toFixed(1)} s / ${r.busy_s.toFixed(1)} s`],
      ["CPU reserved / used", (r) => `${r.cpu_core_s.toFixed(2)} / ${r.cpu_used_s.toFixed(2)} core-s`],
      ["Memory peak", (r) => `${r.memory_peak_mib} MiB`],
      ["Utilization", (r) => (r.utilization == null ? "–" : `${(100 * r.utilization).toFixed(0)}%`)],
      ["Cost", (r) => fmtCost(r.cost)],
    ]} />
  </section>`;
}

function SimpleList({ title, path, field, cols, empty }) {
  const [d, err] = usePoll(path);
  return html`<section>
    <h2>${title}</h2>
    <${Err} msg=${err} />
    <${Table} testid=${field} rows=${d && d[field]} empty=${empty} cols=${cols} />
  </section>`;
}

const Images = () => html`<${SimpleList} title="Images" path="/v1/images" field="images" empty="No images." cols=${[
  ["Name", (i) => i.name], ["Id", (i) => html`<code>${i.id}</code>`], ["Host /usr", (i) => (i.host_usr ? "yes" : "no")], ["Created", (i) => fmtTime(i.created_at)]]} />`;
const Secrets = () => html`<${SimpleList} title="Secrets (names only)" path="/v1/secrets" field="secrets" empty="No secrets." cols=${[
  ["Name", (s) => s.name], ["Keys", (s) => s.keys.join(", ")], ["Used by", (s) => (s.used_by || []).join(", ") || "–"], ["Updated", (s) => fmtTime(s.updated_at)]]} />`;
const Volumes = () => html`<${SimpleList} title="Volumes" path="/v1/volumes" field="volumes" empty="No volumes." cols=${[
  ["Name", (v) => v.name], ["Version", (v) => v.version], ["Created", (v) => fmtTime(v.created_at)], ["Updated", (v) => fmtTime(v.updated_at)]]} />`;

const PAGES = [["functions", "Functions"], ["containers", "Containers"], ["usage", "Usage"], ["images", "Images"], ["secrets", "Secrets"], ["volumes", "Volumes"]];

function route(hash) {
  const p = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (p[0] === "fn" && p.length === 3) return html`<${FunctionPage} app=${p[1]} fn=${p[2]} key=${hash} />`;
  if (p[0] === "call" && p.length === 2) return html`<${CallPage} id=${p[1]} key=${hash} />`;
  switch (p[0]) {
    case "containers": return html`<${Containers} />`;
    case "usage": return html`<${Usage} />`;
    case "images": return html`<${Images} />`;
    case "secrets": return html`<${Secrets} />`;
    case "volumes": return html`<${Volumes} />`;
    default: return html`<${Functions} />`;
  }
}

function App() {
  const [who, setWho] = useState(null);
  const [checked, setChecked] = useState(false);
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const onHash = () => setHash(location.hash);
    const onLogout = () => setWho(null);
    window.addEventListener("hashchange", onHash);
    window.addEventListener("gust-logout", onLogout);
    if (token()) api("/v1/whoami").then(setWho, () => {}).finally(() => setChecked(true));
    else setChecked(true);
    return () => { window.removeEventListener("hashchange", onHash); window.removeEventListener("gust-logout", onLogout); };
  }, []);
  if (!checked) return null;
  if (!who) return html`<${Login} onLogin=${setWho} />`;
  const cur = hash.replace(/^#\/?/, "").split("/")[0] || "functions";
  const logout = () => { sessionStorage.removeItem(TOKEN_KEY); setWho(null); };
  return html`<div>
    <header>
      <b class="brand">Gust</b>
      <nav>${PAGES.map(([k, t]) => html`<a href=${"#/" + k} class=${cur === k || (k === "functions" && (cur === "fn" || cur === "call")) ? "active" : ""}>${t}</a>`)}</nav>
      <span class="who" data-testid="whoami">${who.workspace} · ${who.role}</span>
      <button onClick=${logout}>Log out</button>
    </header>
    <main>${route(hash)}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("root"));
