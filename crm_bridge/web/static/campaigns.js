// The campaign page's live progress: polls the progress JSON every second while the page is open.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const url = live.dataset.progress;
  // The buttons each status allows; a campaign that ends while the page is open loses them.
  const allowed = { draft: ["start"], running: ["pause", "stop"],
                    paused: ["resume", "stop"], stopped: [], done: [] };

  function show(p) {
    document.getElementById("status").textContent = p.status_label;
    document.getElementById("finished").textContent = p.finished;
    document.getElementById("targets").textContent = p.targets;
    const bar = document.querySelector("[role=progressbar]");
    bar.setAttribute("aria-valuemax", p.targets);
    bar.setAttribute("aria-valuenow", p.finished);
    const share = p.targets ? (100 * p.finished) / p.targets : 0;
    document.getElementById("bar").style.width = share.toFixed(1) + "%";
    for (const form of document.querySelectorAll(".controls form[data-action]")) {
      form.hidden = !(allowed[p.status] || []).includes(form.dataset.action);
    }
    for (const cell of document.querySelectorAll("#outcomes [data-outcome]")) {
      cell.textContent = p.by_outcome[cell.dataset.outcome] ?? 0;
    }
    const left = document.getElementById("messages-left");
    if (left) left.textContent = p.messages_left;
  }

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) show(await response.json());
    } catch (_) {
      // the next poll tries again
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
