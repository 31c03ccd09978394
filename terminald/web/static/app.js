// The status page: mode, backlog against the re-entry deadline, devices, outages,
// rejected records with reprint buttons; kept live by the event stream.
// Personal data arrives masked from the API: with the status page's read-only token (the one
// its desktop shortcut carries) the daemon masks card numbers too. The page shows nothing else.
"use strict";

(function () {
  const I = window.TerminaldI18n;
  const t = I.t;
  const TOKEN_KEY = "terminald.token";
  const DEADLINE_DAYS = Number(document.querySelector('meta[name="terminald-deadline-days"]').content) || 10;
  const $ = (id) => document.getElementById(id);
  const state = { status: null, outages: [], rejected: [], live: "connecting", updated: null, stream: null };

  // -- token (the status page's read-only one): from the URL fragment (never sent to the server), else
  // sessionStorage, else asked. It may read, resolve rejections and print; anything else is 403.
  function takeTokenFromFragment() {
    const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (!match) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);  // out of the address bar
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  class Unauthorized extends Error {}

  async function api(path, options) {
    const opts = Object.assign({ cache: "no-store" }, options || {});
    opts.headers = Object.assign({ Authorization: "Bearer " + token(), Accept: "application/json" }, opts.headers);
    const response = await fetch(path, opts);
    if (response.status === 401) throw new Unauthorized();
    const body = await response.json().catch(() => null);
    if (response.status === 403 && body && body.code === "token_not_allowed") throw new Error(t("not_allowed"));
    if (!response.ok) throw new Error((body && (body.detail || body.title)) || "HTTP " + response.status);
    return body;
  }

  function showLogin(wrong) {
    if (state.stream) { state.stream.stop(); state.stream = null; }
    sessionStorage.removeItem(TOKEN_KEY);
    $("board").hidden = true;
    $("login").hidden = false;
    $("login-error").hidden = !wrong;
    $("login-error").textContent = wrong ? t("login_wrong") : "";
    $("token-input").focus();
  }

  // -- formatting ---------------------------------------------------------------------------------------
  const yuan = (fen) => "¥" + (Number(fen || 0) / 100).toFixed(2);
  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  }
  function duration(seconds) {
    const units = I.lang === "en" ? { d: "d ", h: "h ", m: "min", s: "s" } : { d: "天", h: "小时", m: "分钟", s: "秒" };
    let s = Math.max(0, Math.round(seconds));
    if (s >= 86400) return `${Math.floor(s / 86400)}${units.d}${Math.floor((s % 86400) / 3600)}${units.h}`;
    if (s >= 3600) return `${Math.floor(s / 3600)}${units.h}${Math.floor((s % 3600) / 60)}${units.m}`;
    if (s >= 60) return `${Math.floor(s / 60)}${units.m}`;
    return `${s}${units.s}`;
  }
  // The daemon masks card numbers for the status page's token; masking again (the same A1*****23)
  // keeps the page safe if someone types the POS's token into it.
  function maskCard(number) {
    const n = String(number || "");
    if (!n) return "—";
    return n.length <= 4 ? "*".repeat(n.length) : n.slice(0, 2) + "*".repeat(n.length - 4) + n.slice(-2);
  }
  const age = (iso) => (iso ? (Date.now() - new Date(iso).getTime()) / 1000 : null);

  // Working days (Mon-Fri) after `from` up to `to`, as the uploader counts them.
  function workingDaysBetween(from, to) {
    const a = new Date(from.getFullYear(), from.getMonth(), from.getDate());
    const b = new Date(to.getFullYear(), to.getMonth(), to.getDate());
    let n = 0;
    const step = a <= b ? 1 : -1;
    for (const d = new Date(a); d.getTime() !== b.getTime();) {
      d.setDate(d.getDate() + step);
      if (d.getDay() !== 0 && d.getDay() !== 6) n += step;
    }
    return n;
  }
  function addWorkingDays(from, days) {
    const d = new Date(from.getFullYear(), from.getMonth(), from.getDate());
    while (days > 0) { d.setDate(d.getDate() + 1); if (d.getDay() !== 0 && d.getDay() !== 6) days -= 1; }
    return d;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return node;
  }

  // -- rendering ----------------------------------------------------------------------------------------
  function renderMode(s) {
    const mode = s ? s.mode : "unknown";
    const up = (s && s.upstream) || {};
    const box = $("mode");
    box.dataset.mode = mode;
    $("mode-text").textContent = t("mode_" + mode);
    $("mode-alt").textContent = mode === "online" ? "" : I.otherText("mode_" + mode);
    let detail = "";
    if (mode === "planned_downtime" && up.planned_downtime) {
      detail = `${t("until")} ${when(up.planned_downtime.end)} ${up.planned_downtime.reason || ""}`;
    } else if (mode === "offline" && up.outage_since) {
      detail = `${t("since")} ${when(up.outage_since)} (${duration(age(up.outage_since))})`;
    }
    if (up.halted) detail = t("halted") + (detail ? " · " + detail : "");
    $("mode-detail").textContent = detail;
    $("mode-advice").textContent = mode in { online: 1, offline: 1, planned_downtime: 1 } ? t("advice_" + mode) : "";
    const alarms = $("alarms");
    alarms.replaceChildren(...(up.alarms || []).map((a) => el("p", { class: "alarm" }, `⚠ ${a.message || a.code}`)));
    alarms.hidden = !(up.alarms || []).length;
  }

  function renderBacklog(s) {
    const sp = (s && s.spool) || {};
    $("pending-count").textContent = sp.pending == null ? "—" : String(sp.pending);
    $("pending-amount").textContent = sp.pending == null ? "—" : yuan(sp.pending_amount_fen);
    $("rejected-count").textContent = sp.rejected_unresolved == null ? "—" : String(sp.rejected_unresolved);
    $("settled-total").textContent = sp.settled_total == null ? "—" : String(sp.settled_total);
    // Money owed to patients after outage sales, and rejections to settle: `terminald followups`.
    const fu = (s && s.followups) || null;
    const count = $("followups-count");
    count.textContent = fu ? String(fu.count) + (fu.overdue ? ` · ${t("followups_overdue", { n: fu.overdue })}` : "") : "—";
    count.dataset.level = fu && fu.overdue ? "bad" : fu && fu.count ? "warn" : "ok";
    $("refunds-owed").textContent = fu ? yuan(fu.owed_fen) : "—";
    const oldest = sp.oldest_pending_at;
    $("oldest").textContent = oldest ? `${when(oldest)} (${t("ago", { t: duration(age(oldest)) })})` : "—";
    const dl = $("deadline");
    if (!oldest) { dl.textContent = t("deadline_none"); dl.dataset.level = "ok"; return; }
    const due = addWorkingDays(new Date(oldest), DEADLINE_DAYS);
    const left = workingDaysBetween(new Date(), due);
    const p = (n) => String(n).padStart(2, "0");
    const date = `${due.getFullYear()}-${p(due.getMonth() + 1)}-${p(due.getDate())}`;
    dl.textContent = `${date} · ` + (left >= 0 ? t("deadline_left", { n: left }) : t("deadline_passed", { n: -left }));
    dl.dataset.level = left < 0 ? "bad" : left <= 2 ? "warn" : "ok";
  }

  function deviceItem(name, stateName, text) {
    const level = stateName === "ok" || stateName === "no_card" ? "ok" : stateName === "paper_near_end" ? "warn" : "bad";
    return el("li", { "data-level": level, "data-state": stateName }, el("span", { class: "dev-name" }, name),
      el("span", { class: "dev-state" }, text || t("state." + stateName)));
  }

  function renderDevices(s) {
    const dev = (s && s.devices) || {};
    const readers = (dev.readers || []).map((r) => deviceItem(r.name, r.card_present ? "ok" : r.state,
      r.card_present ? t("card_in") : r.state === "no_card" ? t("card_out") : ""));
    if (!readers.length) readers.push(deviceItem(t("no_devices"), dev.reader_state || "no_reader"));
    $("readers").replaceChildren(...readers);
    const printers = (dev.printers || []).map((p) => deviceItem(p.name, p.state));
    if (!printers.length) printers.push(deviceItem(t("no_devices"), "unknown"));
    $("printers").replaceChildren(...printers);
  }

  function renderUpstream(s) {
    const up = (s && s.upstream) || {};
    $("last-ok").textContent = when(up.last_ok_at);
    $("cause").textContent = up.state === "online" ? "—" : (up.cause || up.last_error || "—");
    $("outage-since").textContent = when(up.outage_since);
  }

  function renderRejected() {
    const rows = state.rejected.map((r) => {
      const button = el("button", { type: "button", class: "reprint", "data-id": r.id }, t("reprint"));
      button.addEventListener("click", () => reprint(r.id, button));
      const card = r.card || {};
      const reason = r.rejection ? (r.rejection.message || r.rejection.code || "") : "";
      return el("tr", { "data-id": r.id }, el("td", {}, r.seq), el("td", {}, when(r.business_time)),
        el("td", {}, maskCard(card.card_number)), el("td", {}, card.name_masked || "—"),
        el("td", { class: "num" }, yuan(r.total_fen)), el("td", {}, reason), el("td", {}, button));
    });
    $("rejected").querySelector("tbody").replaceChildren(...rows);
    $("rejected").hidden = !rows.length;
    $("rejected-empty").hidden = !!rows.length;
  }

  function renderOutages() {
    const rows = state.outages.slice(-10).reverse().map((o) => el("tr", { "data-reportable": String(!!o.reportable) },
      el("td", {}, when(o.started_at)), el("td", {}, o.ended_at ? when(o.ended_at) : t("ongoing")),
      el("td", {}, o.duration_s == null ? "—" : duration(o.duration_s)), el("td", {}, o.cause || "—"),
      el("td", {}, (o.planned ? t("planned") : t("unplanned")) + (o.reportable ? " · " + t("reportable") : ""))));
    $("outages").querySelector("tbody").replaceChildren(...rows);
    $("outages").hidden = !rows.length;
    $("outages-empty").hidden = !!rows.length;
  }

  function render() {
    const s = state.status;
    I.apply();
    if (s) {
      $("institution").textContent = s.institution_name || "";
      $("terminal-id").textContent = s.terminal_id || "—";
      $("version").textContent = s.version || "";
    }
    renderMode(s);
    renderBacklog(s);
    renderDevices(s);
    renderUpstream(s);
    renderRejected();
    renderOutages();
    const live = $("live");
    live.dataset.state = state.live;
    live.textContent = t("live_" + state.live);
    $("updated").textContent = state.updated ? when(state.updated.toISOString()).slice(11) + ":" +
      String(state.updated.getSeconds()).padStart(2, "0") : "—";
  }

  function message(text, isError) {
    const m = $("message");
    m.textContent = text;
    m.dataset.level = isError ? "bad" : "ok";
    m.hidden = false;
    clearTimeout(message.timer);
    message.timer = setTimeout(() => { m.hidden = true; }, 8000);
  }

  // -- data ---------------------------------------------------------------------------------------------
  async function guarded(fn) {
    try { await fn(); } catch (e) {
      if (e instanceof Unauthorized) showLogin(true); else message(t("error", { e: e.message }), true);
    }
  }
  const loadStatus = () => guarded(async () => { state.status = await api("/v1/status"); state.updated = new Date(); render(); });
  const loadOutages = () => guarded(async () => { state.outages = await api("/v1/outages"); render(); });
  const loadRejected = () => guarded(async () => {
    state.rejected = (await api("/v1/transactions?status=rejected&limit=200")).items || [];
    render();
  });

  async function reprint(id, button) {
    button.disabled = true;
    try {
      const job = await api(`/v1/transactions/${encodeURIComponent(id)}/receipt`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
      message(`${t("printing")} (${job.job_id})`, false);
    } catch (e) {
      if (e instanceof Unauthorized) showLogin(true); else message(t("print_failed", { e: e.message }), true);
    } finally {
      button.disabled = false;
    }
  }

  // Bursts of events (a backlog draining) cause one refresh, not one per event.
  let refreshTimer = null;
  const wanted = new Set();
  function refreshSoon(...what) {
    what.forEach((w) => wanted.add(w));
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      const todo = new Set(wanted);
      wanted.clear();
      if (todo.has("status")) loadStatus();
      if (todo.has("outages")) loadOutages();
      if (todo.has("rejected")) loadRejected();
    }, 150);
  }

  function onEvent(name) {
    if (name.startsWith("upstream.")) refreshSoon("status", "outages");
    else if (name === "transaction.rejected" || name === "transaction.resolved") refreshSoon("status", "rejected");
    else refreshSoon("status");
  }

  function start() {
    $("login").hidden = true;
    $("board").hidden = false;
    render();
    loadStatus(); loadOutages(); loadRejected();
    state.stream = window.TerminaldSSE.follow("/v1/events", token, {
      onEvent,
      onState(s) {
        state.live = s;
        if (s === "ok") refreshSoon("status", "outages", "rejected");  // catch up after a reconnect
        render();
      },
      onUnauthorized() { showLogin(true); },
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    takeTokenFromFragment();
    I.apply();
    $("lang").addEventListener("click", () => { I.set(I.other()); render(); });
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
      $("token-input").value = "";
      start();
    });
    window.addEventListener("hashchange", () => { takeTokenFromFragment(); if (token() && !state.stream) start(); });
    setInterval(() => { if (state.stream) loadStatus(); }, 30000);  // ages move on without events
    setInterval(() => { if (state.status) render(); }, 10000);
    if (token()) start(); else showLogin(false);
  });
})();
