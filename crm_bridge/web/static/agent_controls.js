// The agent's page, part two: the ring alert, the call controls on the live card, the dial
// pad and the keyboard shortcuts. Follows each card through the "callstate" event agent.js
// sends whenever a card's state changes; builds with agent.js's helpers (callbridgeAgent).
"use strict";

(function () {
  const { el, bi, postJson, errorLine, showError, inPageLanguage } = window.callbridgeAgent;
  const app = document.getElementById("agent-app");
  const cards = document.getElementById("cards");
  const queues = (app.dataset.transferQueues || "").split(",").filter(Boolean);
  const pageTitle = document.title;

  const TARGET_KINDS = [["queue", "队列 Queue"], ["agent", "坐席 Agent"], ["number", "号码 Number"]];
  const CONTROL_STATES = { held: "保持中 On hold", consulting: "转接中 Transferring" };

  // ------------------------------------------------------------------ the ring alert

  let audio = null;
  let titleTimer = null;

  // Two short tones made in the page (no sound file to fetch): a phone-like double ring.
  // data-ring-sound says whether the browser let it sound ("running") or still waits for the
  // agent's first click or key on the page ("suspended"), as browsers do for any page.
  function ringSound() {
    try {
      audio = audio || new AudioContext();
      if (audio.state !== "running") audio.resume();
      const now = audio.currentTime;
      for (const start of [0, 0.25]) {
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        tone.frequency.value = 880;
        gain.gain.setValueAtTime(0.15, now + start);
        gain.gain.setValueAtTime(0, now + start + 0.18);
        tone.connect(gain).connect(audio.destination);
        tone.start(now + start);
        tone.stop(now + start + 0.2);
      }
      app.dataset.ringSound = audio.state;
    } catch (error) {
      app.dataset.ringSound = "unavailable";
    }
  }

  // The first click or key on the page lets it make sound from then on.
  function unlockSound() {
    try {
      audio = audio || new AudioContext();
      audio.resume();
    } catch (error) {
      app.dataset.ringSound = "unavailable";
    }
  }
  document.addEventListener("pointerdown", unlockSound, { once: true });
  document.addEventListener("keydown", unlockSound, { once: true });

  function ringingCards() {
    return cards.querySelectorAll('.card[data-state="ringing"]');
  }

  // The title blinks "【来电】…" while any card rings, and is the page's own again after.
  function ringTitle(number) {
    if (titleTimer) return;
    let on = false;
    const blink = () => {
      if (!ringingCards().length) {
        clearInterval(titleTimer);
        titleTimer = null;
        document.title = pageTitle;
        return;
      }
      on = !on;
      document.title = on ? "【来电】" + number + " Incoming call" : pageTitle;
    };
    blink();
    titleTimer = setInterval(blink, 1000);
  }

  function notify(number) {
    if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
    const note = new Notification("来电 Incoming call", { body: number, tag: "callbridge-ring" });
    note.onclick = () => { window.focus(); note.close(); };
    app.dataset.ringNotified = number;
  }

  function ringAlert(card) {
    if (card.dataset.alerted) return;
    card.dataset.alerted = "1";
    const number = card.querySelector(".caller .number")?.textContent || "";
    ringSound();
    ringTitle(number);
    notify(number);
  }

  const notifyButton = document.getElementById("enable-notifications");
  if (!("Notification" in window) || Notification.permission !== "default") notifyButton.hidden = true;
  notifyButton.onclick = async () => {
    await Notification.requestPermission();
    notifyButton.hidden = Notification.permission !== "default";
  };

  // ------------------------------------------------------------------ call controls

  function controlUrl(card) {
    return "/me/calls/" + encodeURIComponent(card.dataset.linkedid) + "/control";
  }

  function controlsBar(card) {
    const status = el("span", { class: "control-state", role: "status" });
    const error = errorLine();
    const button = (control, label, extra = {}) =>
      el("button", { type: "button", class: "control", "data-control": control, ...extra }, bi(label));
    const kind = el("select", { name: "target_kind", "aria-label": "转接目标类型 Target kind" },
      TARGET_KINDS.map(([value, label]) => el("option", { value }, label)));
    const listId = "transfer-queues-" + card.dataset.linkedid.replace(/[^A-Za-z0-9]/g, "_");
    const target = el("input", { name: "target", type: "text", maxLength: 32,
      placeholder: "support / 1002 / 139…", "aria-label": "转接目标 Transfer target" });
    target.setAttribute("list", listId); // input.list is read-only: only the attribute sets it
    const targetError = errorLine();
    const bar = el("div", { class: "controls" },
      el("p", { class: "control-buttons" },
        button("hold", "保持 Hold"), button("resume", "恢复 Resume", { hidden: true }),
        button("hangup", "挂断 Hang up", { class: "control danger" }), " ", status),
      el("form", { class: "transfer" },
        el("datalist", { id: listId }, queues.map((q) => el("option", { value: q }))),
        kind, target,
        button("transfer", "转接 Transfer"), button("consult", "咨询转接 Attended"),
        button("complete", "完成转接 Complete", { hidden: true }),
        button("cancel", "取消转接 Cancel", { hidden: true }),
        targetError),
      error);
    bar.addEventListener("click", async (event) => {
      const pressed = event.target.closest("button[data-control]");
      if (!pressed) return;
      await sendControl(card, pressed.dataset.control);
    });
    bar.querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      sendControl(card, "transfer");
    });
    return bar;
  }

  async function sendControl(card, control) {
    const bar = card.querySelector(".controls");
    if (!bar || bar.dataset.busy) return;
    if (control === "hangup" && !window.confirm("挂断这通电话？\nHang up this call?")) return;
    const error = bar.querySelector(":scope > .form-error");
    const targetError = bar.querySelector(".transfer .form-error");
    showError(error, "");
    showError(targetError, "");
    const body = { control };
    if (control === "transfer" || control === "consult") {
      body.target_kind = bar.querySelector("[name=target_kind]").value;
      body.target = bar.querySelector("[name=target]").value;
    }
    bar.dataset.busy = "1";
    const result = await postJson(controlUrl(card), body);
    delete bar.dataset.busy;
    if (!result.ok) {
      showError(body.target_kind ? targetError : error, result.message);
      return;
    }
    showControlState(card, result.data.state, inPageLanguage(result.data.message));
  }

  // What the card shows of the control: its state and which buttons make sense now.
  function showControlState(card, state, message) {
    card.dataset.control = state;
    const bar = card.querySelector(".controls");
    if (!bar) return;
    const show = (control, visible) => { bar.querySelector(`[data-control=${control}]`).hidden = !visible; };
    const label = CONTROL_STATES[state] || "";
    bar.querySelector(".control-state").replaceChildren(label ? bi(label) : "", message ? " " + message : "");
    show("hold", state === "talking");
    show("resume", state === "held");
    show("hangup", state === "talking");
    show("transfer", state === "talking" || state === "held");
    show("consult", state === "talking" || state === "held");
    show("complete", state === "consulting");
    show("cancel", state === "consulting");
    if (state === "transferred" || state === "ended") bar.querySelector("form").hidden = true;
  }

  // A page opened again while its call is on hold or transferring shows that state.
  async function knownState(card) {
    try {
      const response = await fetch(controlUrl(card), { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const data = await response.json();
      if (card.querySelector(".controls")) showControlState(card, data.state, data.target || "");
    } catch (error) {
      // the buttons of a talking call stay; a control sent answers with the real state
    }
  }

  function onCallState(card, frame) {
    if (frame.state === "ringing") ringAlert(card); // a page only gets calls ringing its agent
    const live = frame.state === "answered" && frame.mine;
    const bar = card.querySelector(".controls");
    if (live && !bar) {
      card.querySelector(".caller").after(controlsBar(card));
      showControlState(card, "talking", "");
      knownState(card);
    } else if (!live && bar && frame.state !== "answered") {
      bar.remove();
      delete card.dataset.control;
    } else if (!live && bar) {
      bar.remove(); // answered by someone else now: the call left this agent
    }
  }

  cards.addEventListener("callstate", (event) => onCallState(event.target, event.detail));

  // ------------------------------------------------------------------ the dial pad

  const dialPad = document.getElementById("dial-pad");
  const dialNumber = document.getElementById("dial-number");
  const dialError = document.getElementById("dial-error");
  const dialStatus = document.getElementById("dial-status");

  dialPad.addEventListener("click", (event) => {
    const key = event.target.closest("button[data-key]");
    if (!key) return;
    dialNumber.value += key.dataset.key;
    dialNumber.focus();
  });
  dialPad.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(dialError, "");
    dialStatus.textContent = "";
    const result = await postJson("/me/dial", { number: dialNumber.value });
    if (!result.ok) {
      dialNumber.setAttribute("aria-invalid", "true");
      showError(dialError, result.message);
      return;
    }
    dialNumber.removeAttribute("aria-invalid");
    dialStatus.textContent = inPageLanguage(result.data.message);
  });

  // ------------------------------------------------------------------ keyboard shortcuts

  const help = document.getElementById("shortcuts");
  document.getElementById("show-shortcuts").onclick = () => help.showModal();

  function myLiveCard() {
    return cards.querySelector(".card[data-control]");
  }

  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable=''], [contenteditable=true]");
  }

  const SHORTCUTS = {
    "?": () => help.showModal(),
    d: () => dialNumber.focus(),
    h: (card) => card && sendControl(card, card.dataset.control === "held" ? "resume" : "hold"),
    t: (card) => card && card.querySelector(".controls [name=target]").focus(),
    c: (card) => card && card.dataset.control === "consulting" && sendControl(card, "complete"),
    x: (card) => card && card.dataset.control === "talking" && sendControl(card, "hangup"),
    w: (card) => (card || cards.querySelector(".card"))?.querySelector(".wrapup textarea")?.focus(),
  };

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && typing(event.target)) {
      event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (typing(event.target) || help.open) return;
    const action = SHORTCUTS[event.key];
    if (!action) return;
    event.preventDefault();
    action(myLiveCard());
  });
})();
