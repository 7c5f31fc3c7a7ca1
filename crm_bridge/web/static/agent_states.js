// The agent-state page: counts the time in the current state and follows the state as
// Asterisk reports it (a pause made from the phone shows within two seconds).
(function () {
  "use strict";
  const box = document.getElementById("state");
  if (!box) return;
  let since = Number(box.dataset.since);
  let state = box.className;
  const time = document.getElementById("state-time");
  const label = document.getElementById("state-label");
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
  }
  function tick() { time.textContent = clock(Date.now() / 1000 - since); }
  async function follow() {
    try {
      const response = await fetch("/agent/states/now", { credentials: "same-origin" });
      if (!response.ok) return;
      const now = await response.json();
      since = now.since;
      label.textContent = now.label + (now.reason ? "（" + now.reason + "）" : "");
      if ("state-" + now.state !== state) { window.location.reload(); }
    } catch (error) { /* offline for a moment: the next poll tries again */ }
  }
  tick();
  setInterval(tick, 1000);
  setInterval(follow, 2000);
})();
