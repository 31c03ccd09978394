// Texts of the status page. Chinese is the default; English is one click away.
// Every visible string is here, so a counter never sees a half-translated page.
"use strict";

window.TerminaldI18n = (function () {
  const TEXTS = {
    "zh-CN": {
      terminal: "终端",
      live_connecting: "连接中…", live_ok: "实时", live_lost: "重连中…",
      login_title: "请输入状态页令牌",
      login_help: "状态页专用的只读令牌，在本机 /var/lib/terminald-api/status-token 中（不是收银系统的令牌），请联系信息科。",
      login_button: "进入", login_wrong: "令牌无效，请重新输入。",
      not_allowed: "状态页令牌无权执行此操作，请联系信息科。",
      mode_online: "在线", mode_offline: "离线", mode_planned_downtime: "停机", mode_unknown: "未知",
      advice_online: "医保结算正常。",
      advice_offline: "医保系统暂不可用：请患者全额现金支付并保留凭条；系统恢复后将自动补录结算，统筹支付部分退还患者。",
      advice_planned_downtime: "医保系统计划停机：请患者全额现金支付并保留凭条；恢复后自动补录结算，统筹支付部分退还患者。",
      since: "自", until: "至", halted: "上传已停止，请联系信息科",
      backlog_title: "待上传（补录）", pending: "待上传笔数", pending_amount: "待上传金额",
      oldest: "最早一笔", deadline: "补录期限", rejected_count: "待处理拒付", settled_total: "已结算",
      followups_count: "待联系患者", refunds_owed: "应退患者", followups_overdue: "{n} 位已逾期",
      deadline_left: "剩 {n} 个工作日", deadline_passed: "已超期 {n} 个工作日", deadline_none: "无待上传",
      devices_title: "设备", readers: "读卡器", printers: "打印机", no_devices: "未发现",
      card_in: "有卡", card_out: "无卡",
      upstream_title: "医保中心连接", last_ok: "最近一次成功", cause: "原因", outage_since: "中断开始",
      rejected_title: "被拒记录（需人工跟进）", outages_title: "近期中断", none: "无",
      col_seq: "序号", col_time: "业务时间", col_card: "卡号", col_name: "姓名", col_amount: "金额",
      col_reason: "拒付原因", col_start: "开始", col_end: "结束", col_duration: "时长", col_cause: "原因",
      col_kind: "类型", planned: "计划停机", unplanned: "故障", ongoing: "进行中", reportable: "需上报",
      reprint: "重打凭条", printing_job: "已提交打印 ({job})", print_failed: "打印失败：{e}",
      updated: "更新于", ago: "{t}前", error: "出错：{e}",
      actions: "操作", self_pay: "按自费结算", void: "作废", note: "备注（可不填）", cancel: "取消",
      confirm_self_pay_title: "确认按自费结算？", confirm_void_title: "确认作废？",
      confirm_self_pay_text: "患者按自费全额支付，本笔不再由医保结算。",
      confirm_void_text: "本笔交易作废。停机期间患者已全额付款的，作废后应退还患者已付全额：退还后请在收银系统登记退款。",
      confirm_self_pay_ok: "确认按自费结算", confirm_void_ok: "确认作废",
      resolved_self_pay: "已按自费结算：序号 {seq}（{name}，{amount}）",
      resolved_voided: "已作废：序号 {seq}（{name}，{amount}）",
      resolve_failed: "未能处理序号 {seq}：{e}",
      jobs_title: "打印结果不明的凭条",
      jobs_help: "打印中途中断，凭条可能已部分或全部打出：请先查看打印机出纸，确认没有打出完整凭条再点“重打”（新凭条标注“重打”）。",
      col_document: "单据", col_sent: "提交时间", col_printer: "打印机", col_state: "状态",
      document: { receipt: "医保结算凭条", notice: "补录结算通知" },
      job_state: {
        queued: "排队中", printing: "打印中", done: "已打印", failed: "打印失败", unknown: "结果不明",
        cancelled: "已取消",
      },
      retry: "重打", retried: "已重打，新凭条：{state}", retry_sent: "已提交重打（{job}）",
      retry_failed: "重打失败：{e}", jobs_unavailable: "无法列出打印任务：本机 terminald 版本不支持。",
      followups_title: "待联系患者", col_owed: "应退金额", col_deadline: "期限", col_todo: "待办",
      col_phone: "电话", overdue: "已逾期",
      todo_refund: "退还医保统筹部分：交给患者后，请在收银系统登记退款（状态页不能登记；清单另见 terminald followups）",
      todo_rejected: "医保拒付（{why}）：在上方“被拒记录”中按自费结算或作废",
      todo_awaiting_patient: "离线交易待患者持卡到场补录结算：请联系患者，到场后在收银系统读卡并补录",
      state: {
        ok: "正常", paper_near_end: "纸将尽", paper_out: "缺纸", cover_open: "纸仓盖开", offline: "离线",
        unknown: "状态未知", no_card: "无卡", busy: "忙", error: "故障", no_reader: "无读卡器",
        pcscd_unavailable: "读卡服务未运行",
      },
      // Causes of the link to central, alarms, central's rejections, print-job errors and API
      // errors, as staff read them (`sentence()` below; the raw code only for one not listed).
      code: {
        connect_failed: "无法连接医保中心（网络或服务器故障）",
        timeout: "医保中心未在规定时间内应答（网络缓慢或中心繁忙）",
        connection_lost: "与医保中心的连接中途断开（网络不稳定）",
        transport: "与医保中心通信出错（网络或证书问题）",
        unreachable: "无法连接医保中心（网络或服务器故障）",
        http_5xx: "医保中心服务器故障或繁忙（HTTP {status}），稍后自动重试",
        http_4xx: "医保中心暂时不接收请求（HTTP {status}），稍后自动重试",
        refused_http: "医保中心拒绝本终端的请求（HTTP {status}：令牌或终端号可能有误），请联系信息科",
        bad_answer: "医保中心的应答不符合接口规范（中心系统故障），稍后自动重试",
        sequence_gap: "医保中心要求从另一笔记录继续上传，正在自动对齐",
        upstream_error: "与医保中心通信失败，稍后自动重试",
        upstream_transient: "与医保中心通信失败，稍后自动重试",
        upstream_unreachable: "无法连接医保中心（网络或服务器故障）",
        upstream_busy: "医保中心服务器故障或繁忙，稍后自动重试",
        upstream_bad_answer: "医保中心的应答不符合接口规范（中心系统故障），稍后自动重试",
        upstream_refused: "医保中心拒绝本终端的请求（令牌或终端号可能有误），请联系信息科",
        upstream_halt: "医保中心与本机的记录不一致：上传已停止（本机记录完好），请联系信息科",
        chain_broken: "医保中心认为本机记录链断裂：上传已停止（本机记录完好），请联系信息科和医保办",
        chain_forked: "医保中心保存的本终端记录与本机不同（可能另一台电脑使用了相同终端号）：上传已停止，请联系信息科",
        cursor_ahead: "医保中心有本机没有的记录（另一台电脑使用相同终端号，或恢复了旧数据）：上传已停止，请联系信息科",
        cursor_regression: "医保中心丢失了已确认收到的记录：上传已停止（本机记录完好），请联系医保办",
        upstream_config: "无法读取医保中心的令牌或证书文件：上传已停止，请联系信息科",
        planned: "医保中心计划停机",
        planned_downtime: "医保中心计划停机",
        no_upstream_configured: "未配置医保中心地址：交易只在本机记录",
        not_yet_contacted: "尚未连接医保中心",
        reentry_deadline: "有待上传记录接近或超过补录期限：请尽快恢复网络，或联系信息科和医保办",
        downtime_notice_ignored: "医保中心发布的停机通知有误，已忽略：请告知医保办",
        uploader_error: "上传程序出错，已自动重启；如反复出现请联系信息科",
        spool_error: "本机记录库暂时无法写入医保中心的结果，稍后自动重试；如反复出现请联系信息科",
        mirror_lag: "本机记录尚未备份到医院数据库（超过设定时间）：销售不受影响，请联系信息科检查数据库和网络",
        mirror_fork: "医院数据库中本终端的备份与本机记录不一致：备份已停止（本机记录完好），请联系信息科",
        mirror_schema_missing: "医院数据库未建好备份表或未授权本终端：备份已停止，请联系信息科",
        mirror_rejected: "医院数据库拒绝了备份数据：会自动重试，请联系信息科",
        mirror_config: "医院数据库的连接设置或密码文件有误：备份无法连接，请联系信息科",
        mirror_child: "备份进程意外停止，正在自动重启：销售不受影响，如反复出现请联系信息科",
        nhsa_busy: "医保平台繁忙（系统繁忙），稍后自动重试",
        nhsa_bad_answer: "医保平台的应答无法确认交易结果，已自动冲正并将重试",
        nhsa_outcome_unknown: "医保平台多次未给出明确结果，已自动冲正，稍后重试",
        nhsa_sign_in_refused: "医保平台拒绝签到（9001）：请核对机构编码和操作员，或联系信息科",
        nhsa_adapter_fault: "医保接口程序出错：上传已停止（本机记录完好），请联系信息科后恢复上传",
        reversal_refused: "医保平台拒绝冲正（2601），该参保人的交易可能已生效：其后续交易暂停补录，请与医保平台核对后恢复上传",
        nhsa_record_stuck: "有一笔交易无法自动补录：该参保人的交易暂停，请与医保平台核对后恢复上传",
        nhsa_restored_unverified: "本机记录由镜像库恢复：恢复前未结算的交易可能已在医保平台结算，已暂停补录；请与医保平台逐笔核对（平台上已有的先在平台冲正）后恢复上传",
        card_frozen: "医保卡已冻结（如参保人欠缴医保费）",
        not_insured: "未参保或参保状态异常",
        original_not_found: "医保中心找不到要撤销的原交易",
        nhsa_refused: "医保平台拒绝了这笔交易（见原因）",
        nhsa_not_insured: "医保平台：未参保或参保状态异常",
        nhsa_record_invalid: "这笔交易无法按医保平台接口上传（如明细过多）：请按自费处理或联系信息科",
        original_rejected: "原交易未被医保平台接受，撤销在本机完成",
        original_missing: "本机找不到要撤销的原交易",
        nhsa_original_unknown: "原交易缺少医保平台的结算信息，无法撤销：请联系信息科",
        invalid_record: "医保中心认为记录内容有误",
        already_revoked: "原交易已被撤销过",
        print_interrupted: "打印中途中断：凭条可能已部分或全部打出",
        print_timeout: "打印机中途停止接收数据：凭条可能已部分或全部打出",
        print_restarted: "打印时程序重启：凭条可能已部分或全部打出",
        printer_unavailable: "打印机不可用（关机、未连接或缺纸）",
        printer_timeout: "打印机无响应（缺纸或故障）",
        printer_config_invalid: "打印机配置有误，请联系信息科",
        print_data_invalid: "凭条内容无法打印（如二维码过长），请联系信息科",
        printer_error: "打印机故障",
        driver_error: "设备故障",
        printer_gone: "该打印机已不在配置中，请联系信息科",
        invalid_transition: "该记录已被处理（状态已变化），列表已刷新",
        not_found: "找不到该记录",
        spool_unavailable: "本机记录库暂时无法写入，请稍后再试或联系信息科",
        spool_full: "本机磁盘已满，请联系信息科",
        token_not_allowed: "状态页令牌无权执行此操作，请联系信息科",
        validation_failed: "输入有误",
        internal_error: "程序内部错误，请联系信息科",
      },
    },
    en: {
      terminal: "Terminal",
      live_connecting: "Connecting…", live_ok: "Live", live_lost: "Reconnecting…",
      login_title: "Enter the status page token",
      login_help: "The status page's read-only token, in /var/lib/terminald-api/status-token on this PC (not the POS's token); ask hospital IT.",
      login_button: "Open", login_wrong: "That token is not valid; try again.",
      not_allowed: "The status page's token may not do this; ask hospital IT.",
      mode_online: "Online", mode_offline: "OFFLINE", mode_planned_downtime: "PLANNED DOWNTIME",
      mode_unknown: "Unknown",
      advice_online: "Insurance settlement works normally.",
      advice_offline: "The insurance system is unavailable: the patient pays the full amount in cash and keeps the receipt; it is settled automatically after recovery and the fund's share is refunded.",
      advice_planned_downtime: "Planned insurance downtime: the patient pays the full amount in cash and keeps the receipt; it is settled after recovery and the fund's share is refunded.",
      since: "since", until: "until", halted: "Uploading stopped: call hospital IT",
      backlog_title: "Backlog (re-entry)", pending: "Pending", pending_amount: "Pending amount",
      oldest: "Oldest", deadline: "Re-entry deadline", rejected_count: "Rejected, to follow up",
      settled_total: "Settled",
      followups_count: "Patients to contact", refunds_owed: "Owed to patients", followups_overdue: "{n} overdue",
      deadline_left: "{n} working days left", deadline_passed: "{n} working days overdue",
      deadline_none: "nothing pending",
      devices_title: "Devices", readers: "Card readers", printers: "Printers", no_devices: "none found",
      card_in: "card in", card_out: "no card",
      upstream_title: "Central system", last_ok: "Last success", cause: "Cause", outage_since: "Outage since",
      rejected_title: "Rejected records (follow up)", outages_title: "Recent outages", none: "None",
      col_seq: "Seq", col_time: "Business time", col_card: "Card", col_name: "Name", col_amount: "Amount",
      col_reason: "Reason", col_start: "Start", col_end: "End", col_duration: "Duration", col_cause: "Cause",
      col_kind: "Kind", planned: "planned", unplanned: "fault", ongoing: "ongoing", reportable: "report it",
      reprint: "Reprint receipt", printing_job: "Sent to the printer ({job})", print_failed: "Printing failed: {e}",
      updated: "Updated", ago: "{t} ago", error: "Error: {e}",
      actions: "Actions", self_pay: "Settle as self-pay", void: "Void", note: "Note (optional)", cancel: "Cancel",
      confirm_self_pay_title: "Settle as self-pay?", confirm_void_title: "Void this sale?",
      confirm_self_pay_text: "The patient pays the full amount; the insurance fund does not pay this sale.",
      confirm_void_text: "The sale is void. If the patient paid in full during an outage, all they paid is owed back: hand it over, then record the refund at the POS.",
      confirm_self_pay_ok: "Settle as self-pay", confirm_void_ok: "Void the sale",
      resolved_self_pay: "Settled as self-pay: seq {seq} ({name}, {amount})",
      resolved_voided: "Voided: seq {seq} ({name}, {amount})",
      resolve_failed: "Seq {seq} was not resolved: {e}",
      jobs_title: "Receipts whose printing is uncertain",
      jobs_help: "Printing stopped part-way: the receipt may have come out in part or in full. Look at the printer first; reprint only if no complete receipt came out (the new one says REPRINT).",
      col_document: "Document", col_sent: "Sent at", col_printer: "Printer", col_state: "State",
      document: { receipt: "Insurance receipt", notice: "Settlement notice" },
      job_state: {
        queued: "queued", printing: "printing", done: "printed", failed: "failed", unknown: "outcome unknown",
        cancelled: "cancelled",
      },
      retry: "Reprint", retried: "Reprinted, new receipt: {state}", retry_sent: "Reprint sent ({job})",
      retry_failed: "Reprint failed: {e}", jobs_unavailable: "Print jobs cannot be listed: this terminald is too old.",
      followups_title: "Patients to contact", col_owed: "Owed", col_deadline: "Deadline", col_todo: "To do",
      col_phone: "Phone", overdue: "overdue",
      todo_refund: "Refund the fund's share: once handed over, record it at the POS (not from this page; the list is also in terminald followups)",
      todo_rejected: "Rejected by central ({why}): settle as self-pay or void it under “Rejected records” above",
      todo_awaiting_patient: "Outage sale waiting for its patient: call them back; once they are here with the card, re-settle it at the POS",
      state: {
        ok: "OK", paper_near_end: "paper low", paper_out: "paper out", cover_open: "cover open",
        offline: "offline", unknown: "status unknown", no_card: "no card", busy: "busy", error: "error",
        no_reader: "no reader", pcscd_unavailable: "card service not running",
      },
      code: {
        connect_failed: "Cannot reach the central system (network or server down)",
        timeout: "The central system did not answer in time (slow network or busy server)",
        connection_lost: "The connection to the central system broke off (unstable network)",
        transport: "Communication with the central system failed (network or certificate problem)",
        unreachable: "Cannot reach the central system (network or server down)",
        http_5xx: "The central system is failing or overloaded (HTTP {status}); retried automatically",
        http_4xx: "The central system is not taking requests now (HTTP {status}); retried automatically",
        refused_http: "The central system refuses this terminal (HTTP {status}: token or terminal id may be wrong); call hospital IT",
        bad_answer: "The central system answered outside the protocol (a fault there); retried automatically",
        sequence_gap: "The central system asks to continue from another record; realigning automatically",
        upstream_error: "Communication with the central system failed; retried automatically",
        upstream_transient: "Communication with the central system failed; retried automatically",
        upstream_unreachable: "Cannot reach the central system (network or server down)",
        upstream_busy: "The central system is failing or overloaded; retried automatically",
        upstream_bad_answer: "The central system answered outside the protocol (a fault there); retried automatically",
        upstream_refused: "The central system refuses this terminal (token or terminal id may be wrong); call hospital IT",
        upstream_halt: "The central system's books disagree with this PC's: uploading stopped (records here are safe); call hospital IT",
        chain_broken: "The central system says this terminal's record chain is broken: uploading stopped (records here are safe); call hospital IT and the insurance office",
        chain_forked: "The central system holds another history of this terminal (another PC with the same terminal id?): uploading stopped; call hospital IT",
        cursor_ahead: "The central system holds records this PC does not have (another PC with the same terminal id, or an old backup restored): uploading stopped; call hospital IT",
        cursor_regression: "The central system lost records it had confirmed: uploading stopped (records here are safe); call the insurance office",
        upstream_config: "The central system's token or certificate files cannot be read: uploading stopped; call hospital IT",
        planned: "Planned downtime of the central system",
        planned_downtime: "Planned downtime of the central system",
        no_upstream_configured: "No central system configured: sales are recorded on this PC only",
        not_yet_contacted: "The central system has not been contacted yet",
        reentry_deadline: "Pending records are near or past the re-entry deadline: restore the network soon, or call hospital IT and the insurance office",
        downtime_notice_ignored: "A downtime notice from the central system is wrong and was ignored: tell the insurance office",
        uploader_error: "The uploader failed and restarted itself; call hospital IT if this repeats",
        spool_error: "The local record store could not save the central system's answers; retried automatically, call hospital IT if this repeats",
        mirror_lag: "Records not yet copied to the hospital's database for too long: sales go on; call hospital IT to check the database and network",
        mirror_fork: "The hospital's database holds another history of this terminal: copying stopped (records here are safe); call hospital IT",
        mirror_schema_missing: "The hospital's database lacks the mirror's tables or this terminal's grant: copying stopped; call hospital IT",
        mirror_rejected: "The hospital's database refused a record: retried automatically; call hospital IT",
        mirror_config: "The hospital database's connection settings or password file cannot be used: copying cannot connect; call hospital IT",
        mirror_child: "The copying process stopped and is being restarted: sales are not affected; call hospital IT if it keeps happening",
        nhsa_busy: "The national platform is busy (系统繁忙); retried automatically",
        nhsa_bad_answer: "The national platform's answer does not settle the outcome: reversed automatically, then retried",
        nhsa_outcome_unknown: "The national platform gave no definite outcome several times: reversed automatically, retried later",
        nhsa_sign_in_refused: "The national platform refused the sign-in (9001): check the institution code and operator, or call hospital IT",
        nhsa_adapter_fault: "The national platform adapter failed: uploading stopped (nothing lost here); call hospital IT, then resume",
        reversal_refused: "The national platform refused a reversal (2601): that settlement may stand; this patient's later sales wait until the platform's books are checked and uploading is resumed",
        nhsa_record_stuck: "One sale cannot be re-entered by itself: this patient's sales wait until it is checked with the platform and uploading is resumed",
        nhsa_restored_unverified: "This spool was restored from the mirror: sales pending before the restore may already stand at the national platform, so they wait; check each with the platform (reverse there any that stands), then resume uploading",
        card_frozen: "The insurance card is frozen (e.g. contributions unpaid)",
        not_insured: "Not insured, or the insurance status is irregular",
        original_not_found: "The central system cannot find the sale to be revoked",
        nhsa_refused: "The national platform refused this sale (see the reason)",
        nhsa_not_insured: "The national platform: not insured, or insurance not in force",
        nhsa_record_invalid: "This sale cannot be sent to the national platform as it is (e.g. too many lines): settle it as self-pay or call hospital IT",
        original_rejected: "The platform never accepted the original sale: the revoke is completed here",
        original_missing: "The sale to be revoked is not on this PC",
        nhsa_original_unknown: "The original sale lacks the platform's settlement details and cannot be revoked: call hospital IT",
        invalid_record: "The central system found the record invalid",
        already_revoked: "The original sale was revoked already",
        print_interrupted: "Printing stopped part-way: the receipt may have come out in part or in full",
        print_timeout: "The printer stopped taking data part-way: the receipt may have come out in part or in full",
        print_restarted: "The program restarted while printing: the receipt may have come out in part or in full",
        printer_unavailable: "The printer is unavailable (off, unplugged or out of paper)",
        printer_timeout: "The printer does not respond (out of paper or faulty)",
        printer_config_invalid: "The printer is configured wrongly; call hospital IT",
        print_data_invalid: "The receipt cannot be printed as it is (e.g. a QR code too long); call hospital IT",
        printer_error: "Printer fault",
        driver_error: "Device fault",
        printer_gone: "This printer is no longer configured; call hospital IT",
        invalid_transition: "This record was handled already (its state changed); the list is refreshed",
        not_found: "No such record",
        spool_unavailable: "The local record store cannot be written now; try again later or call hospital IT",
        spool_full: "The disk of this PC is full; call hospital IT",
        token_not_allowed: "The status page's token may not do this; call hospital IT",
        validation_failed: "Invalid input",
        internal_error: "Internal program error; call hospital IT",
      },
    },
  };
  const KEY = "terminald.lang";
  let lang = TEXTS[localStorage.getItem(KEY)] ? localStorage.getItem(KEY) : "zh-CN";

  function t(key, vars) {
    const parts = key.split(".");
    let value = TEXTS[lang];
    for (const p of parts) value = value == null ? undefined : value[p];
    if (value === undefined) value = parts[parts.length - 1];
    return String(value).replace(/\{(\w+)\}/g, (_, k) => (vars && k in vars ? vars[k] : ""));
  }

  // A cause, alarm, rejection or error code as the sentence staff read. Codes with a number are
  // matched by shape (http_503, refused_http_401); spaces name a few causes ("no upstream
  // configured"). `fallback` (else the raw text) only for a code this table does not know.
  function codeOf(raw) {
    const text = String(raw == null ? "" : raw).trim();
    let m = /^refused_http_(\d{3})$/.exec(text);
    if (m) return ["refused_http", { status: m[1] }];
    m = /^http_(\d{3})$/.exec(text);
    if (m) return [m[1][0] === "5" ? "http_5xx" : "http_4xx", { status: m[1] }];
    const key = text.toLowerCase().replace(/[\s-]+/g, "_");
    // The national platform's causes name why an answer was not definite (nhsa_not_envelope,
    // nhsa_refused_unknown, ...): one sentence says what staff need to know of them all.
    if (key.startsWith("nhsa_") && !Object.prototype.hasOwnProperty.call(TEXTS[lang].code, key)) {
      return ["nhsa_bad_answer", {}];
    }
    return [key, {}];
  }
  function knows(raw) { return Object.prototype.hasOwnProperty.call(TEXTS[lang].code, codeOf(raw)[0]); }
  function sentence(raw, fallback) {
    if (raw == null || raw === "") return fallback || "—";
    const [key, vars] = codeOf(raw);
    if (knows(raw)) return t("code." + key, vars);
    return fallback || String(raw);
  }

  function other() { return lang === "zh-CN" ? "en" : "zh-CN"; }
  function otherText(key) { const saved = lang; lang = other(); const v = t(key); lang = saved; return v; }

  function apply(root) {
    document.documentElement.lang = lang;
    for (const el of (root || document).querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    const button = document.getElementById("lang");
    if (button) {
      button.textContent = lang === "zh-CN" ? "English" : "中文";
      button.lang = other();
    }
  }

  function set(next) {
    lang = TEXTS[next] ? next : "zh-CN";
    localStorage.setItem(KEY, lang);
    apply();
  }

  return { t, apply, set, other, otherText, sentence, knows, codeOf, get lang() { return lang; } };
})();
