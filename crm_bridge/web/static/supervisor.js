// The call page: each recording's transcript follows its audio. Clicking a line plays from its
// start; the line being spoken is highlighted as the audio plays (timeupdate); ?t= starts the
// first recording at a moment.
"use strict";

function followAudio(section) {
  const player = section.querySelector("audio.player");
  const lines = Array.from(section.querySelectorAll(".transcript li[data-start]"));
  if (!player) return;

  const startAt = parseFloat(player.dataset.startAt);
  if (!Number.isNaN(startAt)) {
    const seek = () => { player.currentTime = startAt; };
    if (player.readyState >= 1) seek(); else player.addEventListener("loadedmetadata", seek, { once: true });
  }

  const lineAt = (seconds) => lines.find(
    (li) => seconds >= parseFloat(li.dataset.start) && seconds < parseFloat(li.dataset.end));

  let current = null;
  function highlight() {
    const line = lineAt(player.currentTime) || null;
    if (line === current) return;
    if (current) { current.classList.remove("speaking"); current.removeAttribute("aria-current"); }
    current = line;
    if (line) {
      line.classList.add("speaking");
      line.setAttribute("aria-current", "true");
      line.scrollIntoView({ block: "nearest" });
    }
  }
  player.addEventListener("timeupdate", highlight);
  player.addEventListener("seeked", highlight);

  for (const li of lines) {
    li.tabIndex = 0;
    const jump = () => {
      player.currentTime = parseFloat(li.dataset.start);
      player.play().catch(() => {});
    };
    li.addEventListener("click", jump);
    li.addEventListener("keydown", (event) => { if (event.key === "Enter") jump(); });
  }
}

document.querySelectorAll("section.recording").forEach(followAudio);
