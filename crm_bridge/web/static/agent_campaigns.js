// The agent's preview calls: while a call the agent placed is not settled, the page looks again
// every few seconds, so the next customer appears once the call's outcome is recorded.
"use strict";
(function () {
  const calls = document.getElementById("preview-calls");
  if (!calls || !calls.dataset.held) return;
  setTimeout(() => window.location.reload(), 3000);
})();
