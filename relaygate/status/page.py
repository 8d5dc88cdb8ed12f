"""The status page routes: ``GET /status`` (a self-contained HTML page) and ``GET /status.json``.

The page has no build step and loads nothing from elsewhere: its CSS and JavaScript are
inline, and a Content-Security-Policy allows exactly those (by hash) plus requests to its own
origin. Every second it fetches ``status.json`` *relative to its own URL*, so it keeps
working when the app is mounted under a prefix (``/llm/status`` polls ``/llm/status.json``).
Everything taken from the data (config ids, target names, reasons, request ids) is inserted
as text (``textContent``), never parsed as markup. When ``auth.admin_keys`` guards
``status.json``, the page sends the key it was opened with in its URL fragment
(``/status#key=...``: a fragment never leaves the browser) as ``Authorization: Bearer``,
keeping it in the tab's session storage only.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relaygate.config.model import RoutingConfig
from relaygate.status.board import StatusBoard

POLL_INTERVAL_MS = 1000
"""How often the page fetches ``status.json``."""

PAGE_TITLE = "relaygate status"
"""The page's ``<title>`` and heading."""

_STYLE = """
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1b1f24; --muted: #656d76;
  --line: #d8dee4; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --idle: #8c959f;
  --code: #eef1f4; }
@media (prefers-color-scheme: dark) { :root { --bg: #0d1117; --card: #161b22; --fg: #e6edf3;
  --muted: #8d96a0; --line: #30363d; --ok: #3fb950; --warn: #d29922; --bad: #f85149;
  --idle: #6e7681; --code: #1f242c; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  background: var(--bg); color: var(--fg); }
header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap;
  padding: 14px 24px; border-bottom: 1px solid var(--line); background: var(--card); }
header h1 { margin: 0; font-size: 18px; }
main, #configs { display: grid; gap: 16px; }
main { padding: 16px 24px 32px; }
.muted { color: var(--muted); }
.conn::before { content: "\\25CF "; }
.conn.live { color: var(--ok); }
.conn.stale { color: var(--bad); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; }
.card h2 { margin: 0 0 8px; font-size: 16px; display: flex; gap: 10px; align-items: baseline;
  flex-wrap: wrap; }
.card h3 { margin: 14px 0 6px; font-size: 13px; text-transform: uppercase;
  letter-spacing: .04em; color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px 5px 0; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:last-child td { border-bottom: 0; }
table.fallbacks { width: auto; min-width: 50%; }
table.fallbacks th, table.fallbacks td { padding-right: 24px; }
.path { display: block; color: var(--muted); font-size: 12px; }
code, .code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace;
  background: var(--code); padding: 1px 5px; border-radius: 4px; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; color: #fff; background: var(--idle); }
.badge.healthy { background: var(--ok); }
.badge.degraded { background: var(--warn); }
.badge.failing { background: var(--bad); }
.badge.circuit.closed { background: var(--ok); }
.badge.circuit.half_open { background: var(--warn); }
.badge.circuit.open { background: var(--bad); }
.bar { display: inline-block; width: 60px; height: 6px; border-radius: 3px;
  background: var(--bad); vertical-align: middle; margin-left: 6px; overflow: hidden; }
.bar > span { display: block; height: 100%; background: var(--ok); }
.empty { color: var(--muted); font-style: italic; }
.last-fallback dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px;
  margin: 0; }
.last-fallback dt { color: var(--muted); }
.last-fallback dd { margin: 0; }
"""

_SCRIPT = """
"use strict";
const INTERVAL_MS = __INTERVAL__;
let lastUpdate = null;

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function pct(ratio) {
  if (ratio === null || ratio === undefined) return "\\u2014";
  return (ratio * 100).toFixed(ratio === 1 || ratio === 0 ? 0 : 1) + "%";
}
function ms(value) {
  if (value === null || value === undefined) return "\\u2014";
  if (value >= 1000) return (value / 1000).toFixed(2) + " s";
  return (value < 10 ? value.toFixed(1) : Math.round(value)) + " ms";
}
function ago(seconds) {
  if (seconds < 1) return "just now";
  if (seconds < 120) return Math.round(seconds) + " s ago";
  if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
  return Math.round(seconds / 3600) + " h ago";
}
function badge(state) { return el("span", "badge health " + state, state); }
function bar(ratio) {
  const outer = el("span", "bar");
  if (ratio === null || ratio === undefined) { outer.style.visibility = "hidden"; return outer; }
  const inner = el("span");
  inner.style.width = (ratio * 100).toFixed(1) + "%";
  outer.append(inner);
  return outer;
}
function targetName(label, path) {
  const cell = el("td", "t-name", el("span", "t-label", label));
  if (path !== label) cell.append(el("span", "path", path));
  return cell;
}
function targetRow(t) {
  const row = el("tr", "target",
    targetName(t.label, t.path),
    el("td", "t-provider", t.provider, t.model ? el("span", "path", t.model) : null),
    el("td", "t-health", badge(t.health)),
    el("td", "t-circuit", t.circuit ? el("span", "badge circuit " + t.circuit,
                                         t.circuit.replace("_", "-")) : "\u2014"),
    el("td", "num t-attempts", t.attempts),
    el("td", "num t-success", pct(t.success_ratio), bar(t.success_ratio)),
    el("td", "num t-p50", ms(t.p50_ms)),
    el("td", "num t-p95", ms(t.p95_ms)),
    el("td", "t-last",
       t.last ? el("code", "t-last-status", String(t.last.status ?? "none")) : "\\u2014",
       t.last ? " " + t.last.reason + " \\u00b7 " + ago(t.last.age_s) : null));
  row.dataset.target = t.path;
  return row;
}
function fallbackRow(f) {
  const row = el("tr", "fallback",
    el("td", "f-from", f.from_label),
    el("td", "f-arrow", "\\u2192"),
    el("td", "f-to", f.to_label),
    el("td", "num f-count", f.count),
    el("td", "num f-total", f.total),
    el("td", "f-reason", el("code", null, f.last_reason)),
    el("td", "f-age", ago(f.last_age_s)));
  row.dataset.from = f.from;
  row.dataset.to = f.to;
  return row;
}
function table(className, headers, rows, emptyText) {
  if (!rows.length) return el("p", "empty", emptyText);
  const head = el("tr", null);
  for (const [text, cls] of headers) head.append(el("th", cls, text));
  return el("table", className, el("thead", null, head), el("tbody", null, ...rows));
}
function plural(count, word) { return count + " " + word + (count === 1 ? "" : "s"); }
function lastFallback(f, withConfig) {
  const hops = el("span", "lf-hops");
  f.hops.forEach((h, i) => {
    if (i) hops.append("; ");
    hops.append(el("span", "lf-from", h.from_label), " \\u2192 ",
                el("span", "lf-to", h.to_label), " (", el("span", "lf-reason", h.reason), ")");
  });
  const when = el("time", "lf-time", new Date(f.at).toLocaleTimeString(), " (", ago(f.age_s), ")");
  when.dateTime = f.at;
  const rows = [["when", when]];
  if (withConfig) rows.push(["config", el("span", "lf-config", f.config)]);
  rows.push(["fell back", hops]);
  rows.push(["request id", el("code", "lf-request-id", f.request_id)]);
  rows.push(["route", el("code", "lf-route", f.route)]);
  rows.push(["final status", el("span", "lf-status", f.status)]);
  const list = el("dl", null);
  for (const [term, value] of rows) list.append(el("dt", null, term), el("dd", null, value));
  return list;
}
function configCard(c, shownRequestId) {
  const summary = c.requests
    ? plural(c.requests, "request") + " \\u00b7 " + pct(c.success_ratio) + " ok \\u00b7 " +
      c.fallback_requests + " fell back"
    : "no requests in window";
  const card = el("section", "card config",
    el("h2", null, el("span", "config-id", c.id), badge(c.health),
       el("span", "muted config-summary", summary),
       c.known ? null : el("span", "muted", "(seen in traffic)")),
    table("targets", [["target"], ["provider"], ["health"], ["circuit"], ["attempts", "num"],
           ["success", "num"],
           ["p50", "num"], ["p95", "num"], ["last attempt"]],
          c.targets.map(targetRow), "no targets"),
    el("h3", null, "fallbacks"),
    table("fallbacks", [["from"], [""], ["to"], ["in window", "num"], ["total", "num"],
                        ["last reason"], ["last seen"]],
          c.fallbacks.map(fallbackRow), "no fallbacks yet"));
  card.dataset.config = c.id;
  if (c.last_fallback && c.last_fallback.request_id !== shownRequestId) {
    card.append(el("h3", null, "last fallback"),
                el("div", "last-fallback", lastFallback(c.last_fallback, false)));
  }
  return card;
}
function render(data) {
  const windowText = data.window_s >= 120 ? Math.round(data.window_s / 60) + " min"
                                          : Math.round(data.window_s) + " s";
  document.getElementById("window").textContent = "window: last " + windowText;
  const last = document.getElementById("last-fallback");
  last.replaceChildren(el("h2", null, "last fallback"),
    data.last_fallback ? el("div", "last-fallback", lastFallback(data.last_fallback, true))
                       : el("p", "empty", "no fallback has happened yet"));
  const configs = document.getElementById("configs");
  const shown = data.last_fallback ? data.last_fallback.request_id : null;
  configs.replaceChildren(...data.configs.map(c => configCard(c, shown)));
  if (!data.configs.length) configs.append(el("p", "empty card", "no configs yet"));
}
function setConnection(live, detail) {
  const conn = document.getElementById("conn");
  conn.className = "conn " + (live ? "live" : "stale");
  conn.textContent = live ? "live \\u00b7 updated " + new Date().toLocaleTimeString()
                          : "stale \\u00b7 " + detail;
}
const KEY_SLOT = "relaygate-admin-key";
(function keepKeyFromFragment() {
  const found = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (!found) return;
  sessionStorage.setItem(KEY_SLOT, decodeURIComponent(found[1]));
  history.replaceState(null, "", location.pathname + location.search);
})();
function requestHeaders() {
  const headers = {accept: "application/json"};
  const key = sessionStorage.getItem(KEY_SLOT);
  if (key) headers.authorization = "Bearer " + key;
  return headers;
}
async function tick() {
  try {
    const response = await fetch("status.json", {cache: "no-store", headers: requestHeaders()});
    if (response.status === 401) {
      throw new Error("status.json needs the admin key: open this page as status#key=<admin key>");
    }
    if (!response.ok) throw new Error("status.json answered " + response.status);
    render(await response.json());
    lastUpdate = Date.now();
    setConnection(true);
  } catch (error) {
    const since = lastUpdate === null ? "never updated"
                                      : "last update " + ago((Date.now() - lastUpdate) / 1000);
    setConnection(false, (error && error.message ? error.message : String(error)) + "; " + since);
  } finally {
    setTimeout(tick, INTERVAL_MS);
  }
}
tick();
""".replace("__INTERVAL__", str(POLL_INTERVAL_MS))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{PAGE_TITLE}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>{PAGE_TITLE}</h1>
<span id="conn" class="conn">connecting</span>
<span id="window" class="muted"></span>
</header>
<main>
<section id="last-fallback" class="card"><h2>last fallback</h2></section>
<div id="configs"></div>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""
"""The status page: static HTML whose inline script renders ``status.json``."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"script-src {_sha256(_SCRIPT)}; "
    f"style-src {_sha256(_STYLE)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)
"""The page's policy: only its own inline script and style run, only its origin is fetched."""

_PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
_JSON_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


def status_routes(
    board: StatusBoard, configs: Callable[[], Iterable[RoutingConfig]]
) -> list[Route]:
    """``GET /status`` (the page) and ``GET /status.json`` (``board.snapshot(configs())``).

    ``configs`` is called on every JSON request, so the page lists the configs known at
    that moment (e.g. ``gateway.configs.known_configs``).
    """

    async def page(_: Request) -> Response:
        return Response(PAGE_HTML, media_type="text/html", headers=_PAGE_HEADERS)

    async def data(_: Request) -> Response:
        body = orjson.dumps(board.snapshot(configs()))
        return Response(body, media_type="application/json", headers=_JSON_HEADERS)

    return [
        Route("/status", page, methods=["GET"], name="status_page"),
        Route("/status.json", data, methods=["GET"], name="status_json"),
    ]
