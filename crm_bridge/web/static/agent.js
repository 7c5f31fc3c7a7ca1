// The agent's page: listens on /ws/pops and keeps one card per call (data-linkedid).
// Plain JS, no library (the center may be offline). Text goes in with textContent only.
"use strict";

(function () {
  const app = document.getElementById("agent-app");
  const cards = document.getElementById("cards");
  const noCalls = document.getElementById("no-calls");
  const socketBanner = document.getElementById("socket-banner");
  const bridgeBanner = document.getElementById("bridge-banner");
  const csrf = app.dataset.csrf;
  const centerZone = app.dataset.timezone || "Asia/Shanghai";

  const SESSION_ENDED = 4401; // the server's close code for a socket whose session ended
  const ENDED_VISIBLE_MS = 60000; // an ended card stays this long, then fades out (unless unsaved)
  const FADE_MS = 1500;
  const SILENCE_MS = 65000; // the server pings every 20 s; this much silence means a dead line
  const MAX_BACKOFF_MS = 30000;

  const GENDERS = { M: "男 Male", F: "女 Female" };
  const DIRECTIONS = { inbound: "呼入 Inbound", outbound: "呼出 Outbound" };
  const DISPOSITIONS = {
    answered: "已接听 Answered",
    abandoned: "放弃 Abandoned",
    busy: "忙线 Busy",
    no_answer: "未接 No answer",
    failed: "失败 Failed",
  };
  const COMPLAINT_STATUSES = { open: "待处理 Open", in_progress: "处理中 In progress" };
  const PHONE_KINDS = { mobile: "手机 Mobile", home: "家庭 Home", work: "单位 Work", other: "其他 Other" };
  const WRAPUP_CODES = [
    ["inquiry", "咨询 Inquiry"],
    ["order", "下单 Order"],
    ["after_sales", "售后 After-sales"],
    ["complaint", "投诉 Complaint"],
    ["appointment", "预约 Appointment"],
    ["return_visit", "回访 Return visit"],
    ["other", "其他 Other"],
  ];
  const CAMPAIGN_KINDS = {
    return_visit: "回访 Return visit",
    birthday: "生日祝福 Birthday",
    festival: "节日问候 Festival",
    complaint_followup: "投诉回访 Complaint follow-up",
    promotion: "促销通知 Promotion",
  };

  // ------------------------------------------------------------------ small helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // "来电 Incoming call": Chinese first, English after, quieter.
  function bi(text) {
    const cut = text.search(/ [A-Za-z]/);
    if (cut < 0) return document.createTextNode(text);
    const span = document.createElement("span");
    span.append(text.slice(0, cut) + " ", el("span", { class: "en" }, text.slice(cut + 1)));
    return span;
  }

  function money(value) {
    const number = Number(value);
    if (!Number.isFinite(number)) return String(value);
    return "¥" + number.toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function day(iso) {
    return iso ? String(iso).slice(0, 10) : "—";
  }

  function minute(iso) {
    return iso ? String(iso).slice(0, 16).replace("T", " ") : "—";
  }

  // The /me API: JSON with the CSRF header. Resolves to { ok, data } or { ok: false, message }.
  async function postJson(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (e) {
      return { ok: false, message: "网络错误，请重试 / Network error: try again" };
    }
    const data = await response.json().catch(() => ({}));
    if (response.ok) return { ok: true, data };
    const detail = data.detail;
    let message = "保存失败，请重试 / Not saved: try again";
    if (typeof detail === "string") message = detail;
    else if (detail && detail.errors) message = Object.values(detail.errors).join("；");
    else if (Array.isArray(detail)) message = "输入有误 / Invalid input";
    return { ok: false, message, errors: (detail && detail.errors) || {} };
  }

  function errorLine() {
    return el("p", { class: "form-error", role: "alert", hidden: true });
  }

  // Our messages ("中文 / English", the server's or this page's) shown in the page's language;
  // lang.js loads after this script, so this is called when a message comes, never at load.
  function inPageLanguage(message) {
    return message ? window.inPageLanguage(message) : "";
  }

  function showError(line, message) {
    line.textContent = inPageLanguage(message);
    line.hidden = !message;
  }

  // ------------------------------------------------------------------ the customer card

  function facts(pairs) {
    const list = el("dl", { class: "facts" });
    for (const [label, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      list.append(el("dt", {}, bi(label)), el("dd", {}, value));
    }
    return list;
  }

  function birthday(card) {
    if (!card.birthday_label && !card.birthday) return null;
    const kind = card.birthday_kind === "lunar" ? "农历 Lunar" : "公历 Solar";
    const parts = [card.birthday_label || day(card.birthday), " (", bi(kind), ")"];
    if (card.age !== null && card.age !== undefined) parts.push(" · " + card.age + " 岁");
    if (card.birthday_today) {
      const cake = el("img", { class: "birthday-icon", src: "/static/cake.svg", alt: "🎂", width: 16, height: 16 });
      parts.push(" ", el("span", { class: "birthday-today" }, cake, " 今天生日 ", el("span", { class: "en" }, "Birthday today")));
    }
    return el("span", {}, parts);
  }

  // A list of the card folded to its title and count, so the wrap-up stays in view.
  function section(title, items, render) {
    if (!items || items.length === 0) return null;
    return el("details", { class: "fold" }, el("summary", {}, bi(title), " (" + items.length + ")"),
      el("ul", {}, items.map((item) => el("li", {}, render(item)))));
  }

  function complaintLine(c) {
    return el("li", { class: "complaint" }, minute(c.received_at), " · ", COMPLAINT_STATUSES[c.status] || c.status, " · ", c.content);
  }

  // Open complaints, folded, with a count that a complaint filed from the card adds to.
  function complaintsView(card) {
    const count = el("span", { class: "complaint-count" }, String(card.open_complaint_count || 0));
    const list = el("ul", {}, (card.open_complaints || []).map(complaintLine));
    const view = el("details", { class: "fold complaints" + (card.open_complaint_count ? " complaint" : "") },
      el("summary", {}, bi("未结投诉 Open complaints"), " (", count, ")"), list);
    view.filed = (content) => {
      count.textContent = String(Number(count.textContent) + 1);
      view.classList.add("complaint");
      list.prepend(complaintLine({ received_at: new Date().toISOString(), status: "open", content }));
    };
    return view;
  }

  function phoneList(card) {
    const status = el("span", { class: "call-status", role: "status" });
    const items = (card.phones || []).map((phone) => {
      const button = el("button", { type: "button", class: "click-to-call" }, bi("拨打 Call"));
      button.onclick = async () => {
        button.disabled = true;
        status.textContent = inPageLanguage("正在呼叫您的话机… / Ringing your phone…");
        const result = await postJson("/me/click-to-call", { customer_id: card.id, phone: phone.number_e164 });
        status.textContent = inPageLanguage(result.ok ? "请接起话机 / Pick up your phone" : result.message);
        button.disabled = false;
      };
      return el("li", {}, el("span", { class: "number" }, phone.number_e164), " ",
        bi(PHONE_KINDS[phone.kind] || phone.kind), " ", button);
    });
    return items.length ? el("span", {}, el("ul", { class: "phones" }, items), status) : null;
  }

  // The complaint form: category and severity as crm_bridge/pops/work.py lists them; each
  // refusal is shown beside its field.
  const COMPLAINT_CATEGORIES = [
    ["product", "产品质量 Product quality"],
    ["service", "服务态度 Service attitude"],
    ["delivery", "物流配送 Delivery"],
    ["price", "价格 Price"],
    ["other", "其他 Other"],
  ];
  const COMPLAINT_SEVERITIES = [["normal", "一般 Normal"], ["serious", "严重 Serious"], ["urgent", "紧急 Urgent"]];

  function choice(name, options, blank) {
    const select = el("select", { name }, blank ? el("option", { value: "" }, blank) : null);
    for (const [value, label] of options) select.append(el("option", { value }, label));
    return select;
  }

  function complaintForm(card, linkedid, complaints) {
    const text = el("textarea", { name: "content", rows: 2, maxLength: 2000, required: true });
    const category = choice("category", COMPLAINT_CATEGORIES, "请选择 Choose…");
    const severity = choice("severity", COMPLAINT_SEVERITIES);
    const errors = { content: errorLine(), category: errorLine(), severity: errorLine() };
    const error = errorLine();
    const form = el("form", { class: "complaint-form" },
      el("label", {}, bi("投诉类别 Category"), category), errors.category,
      el("label", {}, bi("严重程度 Severity"), severity), errors.severity,
      el("label", {}, bi("投诉内容 Complaint"), text), errors.content, error,
      el("button", { type: "submit" }, bi("提交投诉 Open complaint")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const line of [error, ...Object.values(errors)]) showError(line, "");
      const result = await postJson("/me/complaints", {
        customer_id: card.id, content: text.value, linkedid, category: category.value, severity: severity.value,
      });
      if (!result.ok) {
        const fields = Object.keys(result.errors || {}).filter((name) => errors[name]);
        for (const name of fields) showError(errors[name], result.errors[name]);
        return fields.length ? null : showError(error, result.message);
      }
      const shown = form.closest(".card");
      complaints.filed(text.value.trim());
      form.replaceWith(el("p", { class: "saved" }, bi("投诉已提交 Complaint opened"), " #" + result.data.complaint_id));
      if (shown) markSaved(form, shown);
    });
    watchInput(form);
    return el("details", { class: "complaint-new" }, el("summary", {}, bi("新投诉 New complaint")), form);
  }

  // A minor's guardian consent to marketing calls: who gave it, who recorded it and when.
  function guardianConsent(consent) {
    if (!consent) return null;
    return consent.guardian + " · " + consent.recorded_by + " " + minute(consent.recorded_at);
  }

  function customerView(card, linkedid) {
    const vip = card.vip_level ? el("span", { class: "vip" }, "VIP " + card.vip_level) : null;
    const complaints = complaintsView(card);
    return el(
      "div",
      { class: "customer", "data-customer-id": card.id },
      el("h2", { class: "customer-name" }, card.name, " ", vip),
      facts([
        ["会员卡号 Card no.", card.card_no],
        ["性别 Gender", card.gender ? GENDERS[card.gender] || card.gender : null],
        ["单位 Employer", [card.employer, card.department].filter(Boolean).join(" · ")],
        ["生日 Birthday", birthday(card)],
        ["累计消费 Lifetime spend", money(card.lifetime_spend)],
        ["近12个月 Last 12 months", money(card.spend_last_12_months)],
        ["标签 Tags", (card.tags || []).join("、")],
        ["监护人同意 Guardian consent", guardianConsent(card.guardian_consent)],
        ["电话 Phones", phoneList(card)],
      ]),
      section("最近消费 Last purchases", card.last_purchases, (p) => [
        day(p.purchased_on), " ", money(p.amount), p.department ? " · " + p.department : "",
        p.items ? " · " + p.items : "",
      ]),
      section("最近回访 Last visits", card.last_visits, (v) => [
        minute(v.visited_at), v.place ? " · " + v.place : "", " · ", v.opinions || "—",
        v.suggestions ? "（建议：" + v.suggestions + "）" : "",
      ]),
      complaints,
      section("最近通话 Last calls", card.last_calls, (c) => [
        minute(c.offered_at), " · ", DIRECTIONS[c.direction] || c.direction || "", " · ",
        DISPOSITIONS[c.disposition] || c.disposition || "—", c.agent ? " · " + c.agent : "",
      ]),
      complaintForm(card, linkedid, complaints),
    );
  }

  // A family phone: the agent says which customer is calling; the choice is saved on the call
  // and the list gives way to that customer's card.
  function severalView(lookup, linkedid) {
    const error = errorLine();
    const choices = lookup.cards.map((card) => {
      const button = el("button", { type: "button", class: "choose" }, bi("是此客户 This one"));
      button.onclick = async () => {
        showError(error, "");
        const result = await postJson("/me/calls/" + encodeURIComponent(linkedid) + "/customer", { customer_id: card.id });
        if (!result.ok) return showError(error, result.message);
        view.replaceWith(el("div", { class: "chosen-customer" },
          el("p", { class: "saved" }, bi("已确认来电客户 Caller confirmed")), customerView(card, linkedid)));
      };
      return el("li", {}, el("strong", {}, card.name), " · " + card.card_no,
        card.vip_level ? " · VIP " + card.vip_level : "", button);
    });
    const view = el("div", { class: "several" },
      el("h2", {}, bi("多位客户使用此号码 Several customers share this number"),
        " (" + lookup.customer_count + ")"),
      el("p", { class: "quiet" }, bi("请确认来电者 Choose who is calling")),
      el("ul", { class: "choices" }, choices),
      error);
    return view;
  }

  function newCustomerForm(number, linkedid) {
    const error = errorLine();
    const field = (id, label, input) => [el("label", { htmlFor: id }, bi(label)), input];
    const stamp = Math.random().toString(36).slice(2, 8);
    const form = el("form", { class: "new-customer" },
      el("h2", {}, bi("新客户 New customer")),
      field("phone-" + stamp, "电话 Phone", el("input", { type: "text", id: "phone-" + stamp, name: "phone", value: number || "", readOnly: true })),
      field("name-" + stamp, "姓名 Name", el("input", { type: "text", id: "name-" + stamp, name: "name", required: true, maxLength: 64 })),
      field("gender-" + stamp, "性别 Gender", el("select", { id: "gender-" + stamp, name: "gender" },
        el("option", { value: "" }, "—"), el("option", { value: "M" }, GENDERS.M), el("option", { value: "F" }, GENDERS.F))),
      field("card-" + stamp, "会员卡号（留空自动生成） Card no. (empty: generated)",
        el("input", { type: "text", id: "card-" + stamp, name: "card_no", maxLength: 32 })),
      error,
      el("p", {}, el("button", { type: "submit" }, bi("保存 Save"))));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError(error, "");
      const values = Object.fromEntries(new FormData(form));
      const body = { name: values.name, phone: values.phone, gender: values.gender || null, card_no: values.card_no || null };
      const result = await postJson("/me/calls/" + encodeURIComponent(linkedid) + "/new-customer", body);
      if (!result.ok) return showError(error, result.message);
      const shown = form.closest(".card");
      form.replaceWith(customerView(result.data.card, linkedid));
      if (shown) markSaved(form, shown);
    });
    return watchInput(form);
  }

  // The wrap-up of the call: code and note; saving again replaces both.
  function wrapupForm(linkedid) {
    const error = errorLine();
    const saved = el("span", { class: "saved", hidden: true }, bi("已保存 Saved"));
    const code = el("select", { name: "code", required: true },
      el("option", { value: "" }, "— 请选择 Choose —"),
      WRAPUP_CODES.map(([value, label]) => el("option", { value }, label)));
    const note = el("textarea", { name: "note", rows: 2, maxLength: 2000 });
    const form = el("form", { class: "wrapup" },
      el("h3", {}, bi("通话小结 Wrap-up")),
      el("label", {}, bi("类型 Disposition"), code),
      el("label", {}, bi("备注 Note"), note),
      error,
      el("p", {}, el("button", { type: "submit" }, bi("保存小结 Save wrap-up")), " ", saved));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError(error, "");
      saved.hidden = true;
      const result = await postJson("/me/calls/" + encodeURIComponent(linkedid) + "/wrapup", { code: code.value, note: note.value });
      if (!result.ok) return showError(error, result.message);
      saved.hidden = false;
      markSaved(form);
    });
    return watchInput(form);
  }

  // ------------------------------------------------------------------ campaign calls

  // "2026-11-23T14:05" in the center's zone (not the browser's), as <input type=datetime-local>
  // wants it; the server reads a time without offset in the center's zone.
  function centerMinuteNow() {
    const parts = {};
    const format = new Intl.DateTimeFormat("en-GB", {
      timeZone: centerZone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    for (const part of format.formatToParts(new Date())) parts[part.type] = part.value;
    return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
  }

  function campaignBanner(campaign) {
    return el("p", { class: "campaign" },
      el("strong", {}, bi("活动 Campaign"), "："), el("span", { class: "campaign-name" }, campaign.name),
      " · ", bi(CAMPAIGN_KINDS[campaign.kind] || campaign.kind));
  }

  // The return-visit form: place, time, opinions, suggestions; saved once as a visit record.
  // A failed save keeps what was typed; a saved form stays on the card, read-only.
  function visitForm(linkedid) {
    const error = errorLine();
    const saved = el("p", { class: "saved", role: "status", hidden: true });
    const stamp = Math.random().toString(36).slice(2, 8);
    const field = (name, label, input) => {
      input.id = name + "-" + stamp;
      input.name = name;
      return [el("label", { htmlFor: input.id }, bi(label)), input];
    };
    const place = el("input", { type: "text", maxLength: 128 });
    const when = el("input", { type: "datetime-local", value: centerMinuteNow(), required: true });
    const opinions = el("textarea", { rows: 2, maxLength: 2000 });
    const suggestions = el("textarea", { rows: 2, maxLength: 2000 });
    const button = el("button", { type: "submit" }, bi("保存回访 Save visit"));
    const form = el("form", { class: "visit-form" },
      el("h3", {}, bi("回访记录 Return visit")),
      field("place", "地点 Place", place),
      field("visited_at", "时间 Time", when),
      field("opinions", "意见 Opinions", opinions),
      field("suggestions", "建议 Suggestions", suggestions),
      error, saved,
      el("p", {}, button));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError(error, "");
      if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(when.value)) return showError(error, "请填写时间 / Fill in the time");
      button.disabled = true;
      const body = { place: place.value, visited_at: when.value, opinions: opinions.value, suggestions: suggestions.value };
      const result = await postJson("/me/campaign-calls/" + encodeURIComponent(linkedid) + "/visit", body);
      if (!result.ok) {
        button.disabled = false;
        return showError(error, result.message);
      }
      for (const input of [place, when, opinions, suggestions]) input.readOnly = true;
      saved.replaceChildren(bi("回访记录已保存 Visit saved"), " #" + result.data.visit_id);
      saved.hidden = false;
      form.dataset.saved = "true";
      markSaved(form);
    });
    return watchInput(form);
  }

  // An opt-out the customer said on the call: asked for confirmation, then recorded.
  function optOutButton(campaign, linkedid) {
    const error = errorLine();
    const button = el("button", { type: "button", class: "opt-out" }, bi("客户要求不再接收活动电话 Customer opts out"));
    const box = el("div", { class: "opt-out-box" }, button, error);
    button.onclick = async () => {
      if (!window.confirm("确认记录：此客户不再接收活动电话？\nRecord that this customer opts out of campaign calls?")) return;
      showError(error, "");
      button.disabled = true;
      const note = "通话中要求（" + campaign.name + "） / Asked on the call";
      const result = await postJson("/me/opt-out", { customer_id: campaign.customer_id, linkedid, note });
      if (!result.ok) {
        button.disabled = false;
        return showError(error, result.message);
      }
      box.replaceWith(el("p", { class: "saved opt-out-done", role: "status" }, bi("已记录退订 Opt-out recorded")));
    };
    return box;
  }

  function campaignView(campaign, linkedid) {
    return el("div", { class: "campaign-call" }, visitForm(linkedid), optOutButton(campaign, linkedid));
  }

  function lookupView(lookup, linkedid) {
    switch (lookup.kind) {
      case "known":
        return customerView(lookup.cards[0], linkedid);
      case "multiple":
        return severalView(lookup, linkedid);
      case "withheld":
        return el("h2", { class: "withheld" }, bi("号码未显示 Number withheld"));
      case "internal":
        return el("h2", {}, bi("内部来电 Internal call"));
      default:
        return newCustomerForm(lookup.number_e164, linkedid);
    }
  }

  // ------------------------------------------------------------------ call state

  function stateText(card) {
    const s = card.dataset.state;
    if (s === "ringing") return "振铃中 Ringing";
    if (s === "missed") return "未接 Missed";
    if (s === "answered") {
      if (card.dataset.mine === "true") return "通话中 On the call";
      return "已由 " + (card.dataset.byAgent || "?") + " 接听 Answered by " + (card.dataset.byAgent || "?");
    }
    if (s === "transferred") return "已转接 " + (card.dataset.to || "") + " Transferred to " + (card.dataset.to || "");
    if (s === "ended") {
      const d = DISPOSITIONS[card.dataset.disposition];
      if (!d) return "已结束 Ended";
      const [zh, ...en] = d.split(" ");
      return "已结束（" + zh + "） Ended (" + en.join(" ") + ")";
    }
    return s;
  }

  function applyState(card, frame) {
    card.dataset.state = frame.state;
    card.dataset.mine = frame.mine ? "true" : "false";
    if (frame.by_agent) card.dataset.byAgent = frame.by_agent;
    if (frame.to) card.dataset.to = frame.to;
    if (frame.disposition) card.dataset.disposition = frame.disposition;
    const someoneElse = frame.state === "answered" && !frame.mine;
    card.classList.toggle("greyed", someoneElse);
    const badge = card.querySelector(".state");
    badge.replaceChildren(bi(stateText(card)));
    if (frame.state === "ended") scheduleFade(card);
    // agent_controls.js (ring alert, call controls) follows each card's state from here.
    card.dispatchEvent(new CustomEvent("callstate", { bubbles: true, detail: frame }));
  }

  // What the agent typed is never thrown away by a timer: an ended card whose forms hold
  // unsaved input stays, says so, and goes only once saved or discarded on purpose.
  function hasUnsavedInput(card) {
    return card.querySelector("form[data-dirty=true]") !== null;
  }

  function discardButton(card) {
    const button = el("button", { type: "button", class: "discard" }, bi("放弃未保存的输入 Discard"));
    button.onclick = () => {
      if (!window.confirm("放弃此卡片上未保存的输入？\nDiscard what was typed on this card?")) return;
      card.remove();
      refreshEmpty();
    };
    return el("p", { class: "unsaved-notice", role: "status" },
      bi("有未保存的输入：请保存或放弃 Unsaved input: save it or discard it"), " ", button);
  }

  function fadeWhenDone(card) {
    if (card.dataset.state !== "ended" || card.dataset.fadeDue !== "1") return;
    if (hasUnsavedInput(card)) {
      if (!card.querySelector(".unsaved-notice")) card.querySelector(".card-top").after(discardButton(card));
      card.classList.add("unsaved");
      return;
    }
    card.classList.add("fading");
    setTimeout(() => { if (!hasUnsavedInput(card)) { card.remove(); refreshEmpty(); } }, FADE_MS);
  }

  function scheduleFade(card) {
    if (card.dataset.fadeScheduled) return;
    card.dataset.fadeScheduled = "1";
    setTimeout(() => { card.dataset.fadeDue = "1"; fadeWhenDone(card); }, ENDED_VISIBLE_MS);
  }

  // A form is dirty from its first keystroke until it is saved (markSaved).
  function watchInput(form) {
    form.addEventListener("input", () => {
      form.dataset.dirty = "true";
      const card = form.closest(".card");
      if (card) card.classList.remove("fading");
    });
    return form;
  }

  function markSaved(form, card = form.closest(".card")) {
    delete form.dataset.dirty;
    if (!card) return;
    if (!hasUnsavedInput(card)) {
      card.classList.remove("unsaved");
      const notice = card.querySelector(".unsaved-notice");
      if (notice) notice.remove();
    }
    fadeWhenDone(card);
  }

  window.addEventListener("beforeunload", (event) => {
    if (!cards.querySelector("form[data-dirty=true]")) return;
    event.preventDefault();
    event.returnValue = ""; // the browser asks "Leave site?" in its own words
  });

  function refreshEmpty() {
    noCalls.hidden = cards.children.length > 0;
  }

  // A call rings an agent again (a queue's next round, a reconnect): the card stays as it is,
  // with what the agent typed or chose, and only its state changes.
  function showPop(frame) {
    const shown = cards.querySelector(`[data-linkedid="${CSS.escape(frame.linkedid)}"]`);
    if (shown) {
      applyState(shown, frame);
      return;
    }
    const call = frame.call;
    const direction = DIRECTIONS[call.direction] || "";
    const number = call.direction === "outbound" ? call.callee : call.caller;
    const card = el("article", { class: "card", "data-linkedid": frame.linkedid },
      el("div", { class: "card-top" },
        el("span", { class: "state" }),
        el("span", { class: "meta" }, bi(direction), call.queue ? " · 队列 " + call.queue : ""),
        call.route ? el("span", { class: "route" }, call.route) : null),
      el("p", { class: "caller" },
        el("span", { class: "number" }, number || "—"),
        call.caller_name && call.direction !== "outbound"
          ? el("span", { class: "pbx-name", title: "来电显示名 Caller ID name" }, bi("来电显示 Caller ID"), "：", call.caller_name) : null),
      frame.campaign ? campaignBanner(frame.campaign) : null,
      lookupView(frame.lookup, frame.linkedid),
      frame.campaign ? campaignView(frame.campaign, frame.linkedid) : null,
      wrapupForm(frame.linkedid));
    if (frame.campaign) card.dataset.campaignId = frame.campaign.campaign_id;
    cards.prepend(card);
    applyState(card, frame);
    refreshEmpty();
  }

  function update(frame) {
    const card = cards.querySelector(`[data-linkedid="${CSS.escape(frame.linkedid)}"]`);
    if (card) applyState(card, frame);
  }

  function bridgeState(frame) {
    bridgeBanner.hidden = !frame || frame.state === "connected";
  }

  // ------------------------------------------------------------------ the socket

  // One socket at a time. A socket that closes (or stays silent too long) is replaced after a
  // wait that doubles up to MAX_BACKOFF_MS, with jitter so that a whole room of pages does not
  // come back in the same second; the wait starts again from 1 s only once a new socket has
  // been greeted (a server that accepts and drops at once does not make the page hammer it).
  let backoff = 1000;

  // Cards of calls that ended while the page was away: the server's hello lists the calls
  // still going, so any other card still shown as going is closed.
  function closeCallsNotLive(live) {
    const going = new Set(live || []);
    for (const card of cards.querySelectorAll(".card")) {
      if (card.dataset.state !== "ended" && !going.has(card.dataset.linkedid)) {
        applyState(card, { state: "ended", mine: card.dataset.mine === "true" });
      }
    }
  }

  function handle(frame) {
    if (frame.type === "hello") {
      backoff = 1000;
      bridgeState(frame.bridge_state);
      closeCallsNotLive(frame.live);
    } else if (frame.type === "pop") showPop(frame);
    else if (frame.type === "update") update(frame);
    else if (frame.type === "bridge") bridgeState(frame);
    else if (frame.type === "live_speech") liveSpeech(frame);
  }

  // The live transcript of this agent's own call (the server sends no other call's);
  // a partial result is shown apart, as tentative, until its final replaces it.
  function liveSpeech(frame) {
    const box = document.getElementById("live-transcript");
    box.hidden = false;
    const partial = document.getElementById("live-partial");
    const who = frame.side === "agent" ? "坐席 Agent" : "客户 Customer";
    if (frame.final) {
      const item = document.createElement("li");
      item.dataset.side = frame.side;
      item.textContent = who + ": " + frame.text;
      document.getElementById("live-lines").appendChild(item);
      partial.textContent = "";
    } else {
      partial.textContent = who + ": " + frame.text + " …";
    }
  }

  function disconnected() {
    socketBanner.hidden = false;
    app.dataset.socket = "closed";
  }

  // Whether the browser's cookie still signs this user in to this page (it may have been
  // refreshed since the socket opened); a network error counts as yes: keep reconnecting.
  async function stillSignedIn() {
    try {
      const response = await fetch("/agent", { cache: "no-store", credentials: "same-origin" });
      return response.status !== 401 && response.status !== 403;
    } catch (error) {
      return true;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + "/ws/pops");
    let silence = null;
    let replaced = false;
    let opened = false;
    // Give up on this socket and schedule the next one, once whatever ends it.
    const replace = () => {
      if (replaced) return;
      replaced = true;
      clearTimeout(silence);
      socket.onmessage = null;
      disconnected();
      const wait = backoff * (0.75 + Math.random() / 2);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      setTimeout(connect, wait);
    };
    const watch = () => {
      clearTimeout(silence);
      silence = setTimeout(() => { socket.close(); replace(); }, SILENCE_MS);
    };
    socket.onopen = () => {
      opened = true;
      socketBanner.hidden = true;
      app.dataset.socket = "open";
      watch();
    };
    socket.onmessage = (message) => {
      watch();
      handle(JSON.parse(message.data));
    };
    // A socket whose session ended, or that was refused at its handshake, may mean the user
    // must sign in again.
    socket.onclose = async (event) => {
      if ((event.code === SESSION_ENDED || !opened) && !(await stillSignedIn())) {
        location.assign("/login?next=" + encodeURIComponent("/agent"));
        return;
      }
      replace();
    };
  }

  // What agent_controls.js builds its part of the page with.
  window.callbridgeAgent = { el, bi, postJson, errorLine, showError, inPageLanguage };

  refreshEmpty();
  connect();
})();
