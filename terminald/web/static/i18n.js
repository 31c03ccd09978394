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
      reprint: "重打凭条", printing: "已提交打印", print_failed: "打印失败：{e}",
      updated: "更新于", ago: "{t}前", error: "出错：{e}",
      state: {
        ok: "正常", paper_near_end: "纸将尽", paper_out: "缺纸", cover_open: "纸仓盖开", offline: "离线",
        unknown: "状态未知", no_card: "无卡", busy: "忙", error: "故障", no_reader: "无读卡器",
        pcscd_unavailable: "读卡服务未运行",
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
      reprint: "Reprint receipt", printing: "Sent to the printer", print_failed: "Printing failed: {e}",
      updated: "Updated", ago: "{t} ago", error: "Error: {e}",
      state: {
        ok: "OK", paper_near_end: "paper low", paper_out: "paper out", cover_open: "cover open",
        offline: "offline", unknown: "status unknown", no_card: "no card", busy: "busy", error: "error",
        no_reader: "no reader", pcscd_unavailable: "card service not running",
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

  return { t, apply, set, other, otherText, get lang() { return lang; } };
})();
