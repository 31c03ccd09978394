// The status page: mode, backlog against the re-entry deadline, devices, outages, and the
// counter's chores: rejected records to settle as self-pay or void (confirmed first), receipts
// whose printing is uncertain to reprint, patients to contact; kept live by the event stream.
// Every cause and code is shown as a sentence (i18n.js `code`), the raw code only for one the
// page does not know.
// Personal data arrives masked from the API: with the status page's read-only token (the one
// its desktop shortcut carries) the daemon masks card numbers too. The page shows nothing else.
"use strict";

(function () {
  const I = window.TerminaldI18n;
  const t = I.t;
  const TOKEN_KEY = "terminald.token";
  const DEADLINE_DAYS = Number(document.querySelector('meta[name="terminald-deadline-days"]').content) || 10;
  const $ = (id) => document.getElementById(id);
  const state = {
    status: null, outages: [], rejected: [], followups: null, jobs: [], jobsAvailable: true,
    txSeq: new Map(),  // transaction id -> seq, for the print jobs (which name the transaction only)
    retried: new Map(),  // old job id -> the new job this page made of it (its state followed)
    live: "connecting", updated: null, stream: null,
  };
  // Print jobs shown: those whose outcome is unknown (not retried yet) or that failed, from the
  // last day: one that did print in full needs no action, and an older one no longer a patient.
  const JOBS_WINDOW_MS = 24 * 3600 * 1000;
  const JOB_FINAL = new Set(["done", "failed", "unknown", "cancelled"]);

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
  class ApiError extends Error {
    constructor(message, code, status) { super(message); this.code = code || ""; this.status = status; }
  }

  async function api(path, options) {
    const opts = Object.assign({ cache: "no-store" }, options || {});
    opts.headers = Object.assign({ Authorization: "Bearer " + token(), Accept: "application/json" }, opts.headers);
    const response = await fetch(path, opts);
    if (response.status === 401) throw new Unauthorized();
    const body = await response.json().catch(() => null);
    if (response.status === 403 && body && body.code === "token_not_allowed") {
      throw new ApiError(t("not_allowed"), "token_not_allowed", 403);
    }
    if (!response.ok) {
      throw new ApiError((body && (body.detail || body.title)) || "HTTP " + response.status, body && body.code,
        response.status);
    }
    return body;
  }
  // What to tell staff about a failed call: the sentence for its code, else the daemon's own words.
  const errorText = (e) => (e && e.code && I.knows(e.code) ? I.sentence(e.code) : (e && e.message) || String(e));
  const postJson = (path, body) => api(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });

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
  const joined = (a, b) => a + (I.lang === "en" ? ": " : "：") + b;
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
    // The upload's alarms, then the mirror's (records not yet copied to the hospital's PostgreSQL).
    const raised = [...(up.alarms || []), ...((s && s.mirror && s.mirror.alarms) || [])];
    // The alarm's own message is for IT (English, technical): it is the tooltip, the sentence is shown.
    alarms.replaceChildren(...raised.map((a) => el("p", { class: "alarm", "data-code": a.code,
      title: a.message || "" }, `⚠ ${I.sentence(a.code, a.message)}`)));
    alarms.hidden = !raised.length;
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

  // An outage's or the link's cause: a planned window's is its reason (words already; rows written
  // before the fix carry a "planned: " prefix), any other is a code.
  function causeText(cause, planned) {
    if (!planned) return I.sentence(cause);
    const reason = String(cause || "").replace(/^planned:\s*/, "");
    return !reason || reason === "downtime" || I.knows(reason) ? I.sentence("planned_downtime")
      : joined(I.sentence("planned_downtime"), reason);
  }

  function renderUpstream(s) {
    const up = (s && s.upstream) || {};
    $("last-ok").textContent = when(up.last_ok_at);
    const cause = $("cause");
    cause.textContent = up.state === "online" ? "—" : causeText(up.cause, up.state === "planned_downtime");
    cause.title = up.state === "online" ? "" : up.last_error || "";  // the technical detail, for IT
    $("outage-since").textContent = when(up.outage_since);
  }

  // Central's rejection: the sentence for its code; central's own message when the code is new to us.
  function rejectionText(rejection) {
    if (!rejection) return "";
    return I.sentence(rejection.code, rejection.message || rejection.code);
  }

  function renderRejected() {
    const rows = state.rejected.map((r) => {
      const button = el("button", { type: "button", class: "reprint", "data-id": r.id }, t("reprint"));
      button.addEventListener("click", () => reprint(r.id, button));
      const selfPay = el("button", { type: "button", class: "self-pay", "data-id": r.id }, t("self_pay"));
      selfPay.addEventListener("click", () => askResolve(r, "self_pay"));
      const voided = el("button", { type: "button", class: "void", "data-id": r.id }, t("void"));
      voided.addEventListener("click", () => askResolve(r, "voided"));
      const card = r.card || {};
      const reason = el("td", { title: (r.rejection && r.rejection.message) || "" }, rejectionText(r.rejection));
      return el("tr", { "data-id": r.id, "data-seq": String(r.seq) }, el("td", {}, r.seq),
        el("td", { class: "when" }, when(r.business_time)), el("td", {}, maskCard(card.card_number)),
        el("td", {}, card.name_masked || "—"), el("td", { class: "num" }, yuan(r.total_fen)), reason,
        el("td", { class: "actions" }, button, selfPay, voided));
    });
    $("rejected").querySelector("tbody").replaceChildren(...rows);
    $("rejected").hidden = !rows.length;
    $("rejected-empty").hidden = !!rows.length;
  }

  function renderOutages() {
    const rows = state.outages.slice(-10).reverse().map((o) => el("tr", { "data-reportable": String(!!o.reportable) },
      el("td", { class: "when" }, when(o.started_at)), el("td", {}, o.ended_at ? when(o.ended_at) : t("ongoing")),
      el("td", {}, o.duration_s == null ? "—" : duration(o.duration_s)), el("td", {}, causeText(o.cause, o.planned)),
      el("td", {}, (o.planned ? t("planned") : t("unplanned")) + (o.reportable ? " · " + t("reportable") : ""))));
    $("outages").querySelector("tbody").replaceChildren(...rows);
    $("outages").hidden = !rows.length;
    $("outages-empty").hidden = !!rows.length;
  }

  // -- print jobs whose outcome is unknown (or that failed) --------------------------------------------
  function jobProblem(job) {
    const error = String(job.error || "");
    const coded = /^([a-z_]+): /.exec(error);
    if (coded && I.knows(coded[1])) return I.sentence(coded[1]);
    if (job.state === "unknown") return I.sentence(/restart/.test(error) ? "print_restarted" : "print_interrupted");
    if (/no longer configured/.test(error)) return I.sentence("printer_gone");
    return I.sentence("printer_error");
  }

  function renderJobs() {
    const rows = state.jobs.map((job) => {
      const seq = state.txSeq.get(job.tx_id);
      const retried = state.retried.get(job.job_id);
      const status = el("td", { class: "job-state", title: job.error || "" },
        retried ? t("retried", { state: t("job_state." + retried.state) })
          : joined(t("job_state." + job.state), jobProblem(job)));
      if (retried) status.dataset.state = retried.state;
      const action = el("td", { class: "actions" });
      if (job.state === "unknown" && !job.retried_by && !retried) {
        const button = el("button", { type: "button", class: "retry", "data-id": job.job_id }, t("retry"));
        button.addEventListener("click", () => retryJob(job, button));
        action.append(button);
      }
      return el("tr", { "data-id": job.job_id, "data-state": job.state },
        el("td", {}, seq == null ? "—" : seq), el("td", {}, t("document." + (job.document || "receipt"))),
        el("td", { class: "when" }, when(job.created_at)), el("td", {}, job.printer || "—"),
        status, action);
    });
    $("jobs").querySelector("tbody").replaceChildren(...rows);
    $("jobs").hidden = !rows.length;
    $("jobs-card").querySelector(".help").hidden = !rows.length;
    $("jobs-empty").hidden = !!rows.length || !state.jobsAvailable;
    $("jobs-unavailable").hidden = state.jobsAvailable;
  }

  // -- follow-ups: refunds owed (recorded at the POS, never here), rejections to settle, and outage
  // sales waiting for their patient (re-settled at the POS with the card) ---------------------------
  function renderFollowups() {
    const items = (state.followups && state.followups.items) || [];
    const rows = items.map((f) => {
      const card = f.card || {};
      const deadline = el("td", { class: "when", "data-level": f.overdue ? "bad" : "ok" },
        (f.deadline || "—") + (f.overdue ? ` · ${t("overdue")}` : ""));
      return el("tr", { "data-id": f.id, "data-reason": f.reason, "data-overdue": String(!!f.overdue) },
        el("td", {}, f.seq), el("td", { class: "when" }, when(f.business_time)),
        el("td", {}, maskCard(card.card_number)),
        el("td", { class: "nowrap" }, card.name_masked || "—"),
        el("td", { class: "nowrap" }, f.contact_phone_masked || "—"),
        el("td", { class: "num" }, f.reason === "refund" ? yuan(f.owed_fen) : "—"), deadline,
        el("td", { class: "todo" }, f.reason === "refund" ? t("todo_refund")
          : f.reason === "awaiting_patient" ? t("todo_awaiting_patient")
          : t("todo_rejected", { why: rejectionText(f.rejection) })));
    });
    $("followups").querySelector("tbody").replaceChildren(...rows);
    $("followups").hidden = !rows.length;
    $("followups-empty").hidden = !!rows.length;
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
    renderJobs();
    renderFollowups();
    renderOutages();
    renderConfirm();
    renderMessage();
    const live = $("live");
    live.dataset.state = state.live;
    live.textContent = t("live_" + state.live);
    $("updated").textContent = state.updated ? when(state.updated.toISOString()).slice(11) + ":" +
      String(state.updated.getSeconds()).padStart(2, "0") : "—";
  }

  // The message of the last action, kept as a text key so a language switch translates it too.
  let shown = null;
  function message(key, vars, isError) {
    shown = { key, vars, isError };
    renderMessage();
    clearTimeout(message.timer);
    message.timer = setTimeout(() => { shown = null; renderMessage(); }, 15000);
  }
  function renderMessage() {
    const m = $("message");
    m.hidden = !shown;
    if (!shown) return;
    const vars = {};
    for (const [k, v] of Object.entries(shown.vars || {})) vars[k] = typeof v === "function" ? v() : v;
    m.textContent = t(shown.key, vars);
    m.dataset.level = shown.isError ? "bad" : "ok";
  }

  // -- data ---------------------------------------------------------------------------------------------
  async function guarded(fn) {
    try { await fn(); } catch (e) {
      if (e instanceof Unauthorized) showLogin(true); else message("error", { e: () => errorText(e) }, true);
    }
  }
  const loadStatus = () => guarded(async () => { state.status = await api("/v1/status"); state.updated = new Date(); render(); });
  const loadOutages = () => guarded(async () => { state.outages = await api("/v1/outages"); render(); });
  const loadRejected = () => guarded(async () => {
    state.rejected = (await api("/v1/transactions?status=rejected&limit=200")).items || [];
    render();
  });
  const loadFollowups = () => guarded(async () => { state.followups = await api("/v1/followups"); render(); });
  const loadJobs = () => guarded(async () => {
    let found = [];
    try {
      for (const wanted of ["unknown", "failed"]) {
        const answer = await api(`/v1/print-jobs?state=${wanted}`);
        found = found.concat(Array.isArray(answer) ? answer : answer.items || []);
      }
    } catch (e) {
      // A daemon without the list (404/405) or its `state` filter (422): say so, do not fail the page.
      if (e instanceof ApiError && [404, 405, 422].includes(e.status)) {
        state.jobsAvailable = false;
        render();
        return;
      }
      throw e;
    }
    state.jobsAvailable = true;
    const since = Date.now() - JOBS_WINDOW_MS;
    const recent = (job) => new Date(job.updated_at || job.created_at).getTime() >= since;
    found = found.filter((job) => state.retried.has(job.job_id) || (!job.retried_by && recent(job)));
    found.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    // Print jobs name their transaction by id; staff know it by seq (a sale pruned since: "—").
    await Promise.all([...new Set(found.map((j) => j.tx_id))].filter((id) => !state.txSeq.has(id)).map(
      async (id) => {
        const tx = await api(`/v1/transactions/${encodeURIComponent(id)}`).catch((e) => {
          if (e instanceof ApiError && e.status === 404) return null;
          throw e;
        });
        state.txSeq.set(id, tx ? tx.seq : null);
      }));
    state.jobs = found;
    render();
  });

  async function reprint(id, button) {
    button.disabled = true;
    try {
      const job = await postJson(`/v1/transactions/${encodeURIComponent(id)}/receipt`, {});
      message("printing_job", { job: job.job_id }, false);
    } catch (e) {
      if (e instanceof Unauthorized) showLogin(true); else message("print_failed", { e: () => errorText(e) }, true);
    } finally {
      button.disabled = false;
    }
  }

  // A reprint of a job whose outcome is unknown: a new job (marked REPRINT), followed until it is over.
  async function retryJob(job, button) {
    button.disabled = true;
    try {
      const made = await postJson(`/v1/print-jobs/${encodeURIComponent(job.job_id)}/retry`, {});
      state.retried.set(job.job_id, { job_id: made.job_id, state: "queued" });
      message("retry_sent", { job: made.job_id }, false);
      render();
      followJob(job.job_id, made.job_id);
    } catch (e) {
      button.disabled = false;
      if (e instanceof Unauthorized) { showLogin(true); return; }
      message("retry_failed", { e: () => errorText(e) }, true);
      if (e instanceof ApiError && e.code === "invalid_transition") loadJobs();
    }
  }

  function followJob(oldId, newId, tries) {
    const n = tries || 0;
    setTimeout(() => guarded(async () => {
      const job = await api(`/v1/print-jobs/${encodeURIComponent(newId)}`);
      state.retried.set(oldId, job);
      render();
      if (!JOB_FINAL.has(job.state) && n < 120) followJob(oldId, newId, n + 1);
    }), n === 0 ? 300 : 1000);
  }

  // -- resolving a rejection: confirmed in a dialog, with an optional note --------------------------------
  let resolving = null;  // {record, resolution} while the dialog is open
  const who = (r) => ((r.card || {}).name_masked || maskCard((r.card || {}).card_number));

  function askResolve(record, resolution) {
    resolving = { record, resolution };
    $("confirm-note").value = "";
    $("confirm-error").hidden = true;
    $("confirm-ok").disabled = false;
    renderConfirm();
    $("confirm").showModal();
    $("confirm-cancel").focus();  // Enter on a mistaken click cancels
  }

  function renderConfirm() {
    if (!resolving) return;
    const { record: r, resolution } = resolving;
    const kind = resolution === "self_pay" ? "self_pay" : "void";
    $("confirm").dataset.resolution = resolution;
    $("confirm-title").textContent = t(`confirm_${kind}_title`);
    $("confirm-record").textContent = `${t("col_seq")} ${r.seq} · ${who(r)} · ${yuan(r.total_fen)} · ` +
      rejectionText(r.rejection);
    $("confirm-text").textContent = t(`confirm_${kind}_text`);
    $("confirm-ok").textContent = t(`confirm_${kind}_ok`);
  }

  async function confirmResolve() {
    if (!resolving) return;
    const { record: r, resolution } = resolving;
    const ok = $("confirm-ok");
    ok.disabled = true;
    const note = $("confirm-note").value.trim();
    try {
      await postJson(`/v1/transactions/${encodeURIComponent(r.id)}/resolve`,
        note ? { resolution, note } : { resolution });
    } catch (e) {
      if (e instanceof Unauthorized) { $("confirm").close(); showLogin(true); return; }
      const error = $("confirm-error");
      error.textContent = t("resolve_failed", { seq: r.seq, e: errorText(e) });
      error.hidden = false;
      // Resolved meanwhile (another counter, the POS): nothing more to do here.
      if (e instanceof ApiError && (e.code === "invalid_transition" || e.code === "not_found")) {
        refreshSoon("status", "rejected", "followups");
      } else {
        ok.disabled = false;
      }
      return;
    }
    resolving = null;
    $("confirm").close();
    state.rejected = state.rejected.filter((x) => x.id !== r.id);
    message(resolution === "self_pay" ? "resolved_self_pay" : "resolved_voided",
      { seq: r.seq, name: who(r), amount: yuan(r.total_fen) }, false);
    render();
    refreshSoon("status", "rejected", "followups");
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
      if (todo.has("followups")) loadFollowups();
      if (todo.has("jobs")) loadJobs();
    }, 150);
  }

  function onEvent(name) {
    // `reset`: the stream cannot resume where the page was (another spool, pruned events): reload all.
    if (name === "reset") refreshSoon("status", "outages", "rejected", "followups", "jobs");
    else if (name.startsWith("upstream.")) refreshSoon("status", "outages");
    else if (name === "transaction.rejected" || name === "transaction.resolved") {
      refreshSoon("status", "rejected", "followups");
    } else if (name.startsWith("transaction.")) refreshSoon("status", "followups");
    else if (name.startsWith("printer.")) refreshSoon("status", "jobs");
    else refreshSoon("status");
  }

  function start() {
    $("login").hidden = true;
    $("board").hidden = false;
    render();
    loadStatus(); loadOutages(); loadRejected(); loadFollowups(); loadJobs();
    state.stream = window.TerminaldSSE.follow("/v1/events", token, {
      onEvent,
      onState(s) {
        state.live = s;
        // Catch up after a reconnect.
        if (s === "ok") refreshSoon("status", "outages", "rejected", "followups", "jobs");
        render();
      },
      onUnauthorized() { showLogin(true); },
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    takeTokenFromFragment();
    I.apply();
    $("lang").addEventListener("click", () => { I.set(I.other()); render(); });
    $("confirm-ok").addEventListener("click", confirmResolve);
    $("confirm-cancel").addEventListener("click", () => $("confirm").close());
    $("confirm").addEventListener("close", () => { resolving = null; });
    $("confirm-note").addEventListener("keydown", (ev) => { if (ev.key === "Enter") ev.preventDefault(); });
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
      $("token-input").value = "";
      start();
    });
    window.addEventListener("hashchange", () => { takeTokenFromFragment(); if (token() && !state.stream) start(); });
    // Ages move on without events, and print jobs have none: both are reloaded every 30 s.
    setInterval(() => { if (state.stream) { loadStatus(); loadJobs(); } }, 30000);
    setInterval(() => { if (state.status) render(); }, 10000);
    if (token()) start(); else showLogin(false);
  });
})();
