// Listen, whisper, barge: every button with data-supervise-mode and data-linkedid (the
// wallboard draws them, the live call page and /supervisor/supervise have them) posts
// { mode } to /supervisor/supervise/<linkedid> with the CSRF header; the answer, or the
// reason it was refused, is shown in #supervise-status. The phone rings; nothing else changes.
(function () {
  "use strict";
  const panel = document.getElementById("supervise");
  if (!panel) return;
  const status = document.getElementById("supervise-status");
  function show(text, state) {
    status.textContent = text ? window.inPageLanguage(text) : ""; // at a click: lang.js is loaded
    status.dataset.state = state;
  }
  async function supervise(button) {
    show("…", "sending");
    const linkedid = encodeURIComponent(button.dataset.linkedid);
    try {
      const response = await fetch("/supervisor/supervise/" + linkedid, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json",
                   "X-CSRF-Token": panel.dataset.csrf },
        body: JSON.stringify({ mode: button.dataset.superviseMode }),
      });
      const data = await response.json().catch(() => ({}));
      if (response.ok) {
        show(data.message, "ringing");
      } else {
        const detail = typeof data.detail === "string" ? data.detail : "";
        show(detail || "请求失败 / Request failed (" + response.status + ")", "refused");
      }
    } catch (error) {
      show("网络错误，请重试 / Network error: try again", "refused");
    }
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-supervise-mode]");
    if (button) supervise(button);
  });
})();
