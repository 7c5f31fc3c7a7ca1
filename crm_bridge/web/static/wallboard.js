// The wallboard: draws each frame the server pushes over /ws/wallboard (the whole board each
// time) and counts the times in between. Reconnects after a drop. On the supervisor's page
// (not the big screen) an agent on a call of a queue the supervisor supervises gets the
// listen, whisper and barge buttons (#supervise names the queues; supervise.js posts them).
(function () {
  "use strict";
  const root = document.getElementById("wallboard");
  if (!root) return;
  // Each state's label in the page's language (the frames carry "中文 English").
  const stateLabels = JSON.parse(root.dataset.stateLabels || "{}");
  const status = document.getElementById("wb-status");
  const queueBody = document.querySelector("#wb-queues tbody");
  const agentBody = document.querySelector("#wb-agents tbody");
  let frame = null;
  const supervise = document.getElementById("supervise");
  const supervised = new Set(supervise ? JSON.parse(supervise.dataset.queues || "[]") : []);
  let buttons = new Map(); // "agent|linkedid" -> its cell, kept across redraws (a click in
                           // progress is not lost to the redraw every second)
  if (supervise) {
    const th = document.createElement("th");
    th.innerHTML = '监听 <span class="en">Listen in</span>';
    document.querySelector("#wb-agents thead tr").appendChild(th);
  }
  function superviseCell(a) {
    const key = a.agent + "|" + a.linkedid;
    let td = buttons.get(key);
    if (!td) {
      td = document.createElement("td");
      td.className = "wb-supervise";
      const span = document.createElement("span");
      span.className = "sv-buttons";
      for (const [mode, zh, en] of [["listen", "监听", "Listen"], ["whisper", "耳语", "Whisper"],
                                    ["barge", "强插", "Barge"]]) {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.linkedid = a.linkedid;
        button.dataset.superviseMode = mode;
        button.innerHTML = zh + ' <span class="en">' + en + "</span>";
        span.appendChild(button);
      }
      td.appendChild(span);
    }
    return [key, td];
  }
  let skew = 0; // server clock minus this browser's clock, in seconds
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
  }
  function percent(value) { return value === null ? "—" : Math.round(value * 100) + "%"; }
  function cell(row, text, classes) {
    const td = document.createElement("td");
    td.textContent = text;
    if (classes) td.className = classes;
    row.appendChild(td);
    return td;
  }
  function now() { return Date.now() / 1000 + skew; }
  function draw() {
    if (!frame) return;
    const elapsed = now() - frame.now;
    queueBody.replaceChildren();
    for (const q of frame.queues) {
      const row = document.createElement("tr");
      row.dataset.queue = q.queue;
      cell(row, q.queue);
      cell(row, String(q.waiting), "num wb-waiting" + (q.alert_waiting ? " alert-cell" : ""));
      const longest = q.waiting ? q.longest_wait + elapsed : 0;
      cell(row, clock(longest), "num wb-longest" + (q.alert_longest_wait ? " alert-cell" : ""));
      cell(row, String(q.logged_in), "num wb-logged-in");
      cell(row, String(q.ready), "num wb-ready");
      cell(row, String(q.on_call), "num wb-on-call");
      cell(row, String(q.after_call_work), "num wb-acw");
      cell(row, String(q.paused), "num wb-paused");
      cell(row, String(q.answered), "num wb-answered");
      cell(row, String(q.abandoned), "num wb-abandoned");
      const low = (v) => v !== null && v < 0.8 ? " alert-cell" : "";
      cell(row, percent(q.service_level_today), "num wb-sl-today" + low(q.service_level_today));
      cell(row, percent(q.service_level_recent), "num wb-sl-recent" + low(q.service_level_recent));
      queueBody.appendChild(row);
    }
    agentBody.replaceChildren();
    const kept = new Map();
    for (const a of frame.agents) {
      const row = document.createElement("tr");
      row.dataset.agent = a.agent;
      cell(row, a.agent);
      cell(row, (stateLabels[a.state] || a.label) + (a.reason ? "（" + a.reason + "）" : ""), "wb-state state-" + a.state);
      cell(row, clock(now() - a.since), "num wb-since");
      cell(row, a.customer, "wb-customer");
      cell(row, a.call_since === null ? "" : clock(now() - a.call_since), "num wb-call");
      if (supervise) {
        if (a.linkedid && supervised.has(a.call_queue)) {
          const [key, td] = superviseCell(a);
          kept.set(key, td);
          row.appendChild(td);
        } else {
          cell(row, "", "wb-supervise");
        }
      }
      agentBody.appendChild(row);
    }
    buttons = kept;
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + root.dataset.socket);
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "ping") return;
      skew = data.now - Date.now() / 1000;
      frame = data;
      root.dataset.frames = String(Number(root.dataset.frames || 0) + 1);
      status.textContent = window.inPageLanguage(data.connected ? "实时 / Live" : "电话系统未连接 / PBX not connected");
      status.className = "wb-status" + (data.connected ? "" : " down");
      draw();
    };
    socket.onclose = () => {
      status.textContent = window.inPageLanguage("已断开，重连中… / Disconnected, reconnecting…");
      status.className = "wb-status down";
      setTimeout(connect, 2000);
    };
  }
  // The first frame is shown through window.inPageLanguage, so lang.js (the page's last
  // script) must have run: the socket opens once the page is parsed.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();
  setInterval(draw, 1000);
})();
