// The supervisors' live call page: the transcript and watch-word alerts of one call as they
// arrive on /ws/live-speech. Partial results are shown greyed as tentative until final.
(function () {
  "use strict";
  const section = document.getElementById("live-call");
  if (!section) return;
  const linkedid = section.dataset.linkedid;
  const transcript = document.getElementById("live-transcript");
  const alerts = document.getElementById("live-alerts");
  const tentative = document.getElementById("live-tentative");
  const english = document.documentElement.lang === "en";
  const sides = english ? { customer: "Customer", agent: "Agent" } : { customer: "客户", agent: "坐席" };

  function line(frame) {
    const item = document.createElement("li");
    item.dataset.side = frame.side;
    item.textContent = (sides[frame.side] || frame.side) + ": " + frame.text;
    return item;
  }

  function handle(frame) {
    if (frame.linkedid !== linkedid) return;
    if (frame.type === "live_speech") {
      if (frame.final) {
        transcript.appendChild(line(frame));
        tentative.textContent = "";
      } else {
        tentative.textContent = "…" + frame.text;
      }
    } else if (frame.type === "live_alert") {
      const item = document.createElement("li");
      item.className = frame.tentative ? "alert tentative" : "alert";
      item.textContent = frame.word + " · " + (sides[frame.side] || frame.side) + " · " +
        frame.call_second + " s" + (frame.tentative ? (english ? " (tentative)" : "（待确认）") : "") + " · " + frame.text;
      alerts.appendChild(item);
    } else if (frame.type === "live_call") {
      document.getElementById("live-state").dataset.state = frame.live_transcript;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/live-speech");
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = () => setTimeout(connect, 2000);
  }
  connect();
})();
