// One language at a time (crm_bridge/web/language.py). A label in the style
// `中文 <span class="en">English</span>` has its Chinese as bare text, which CSS cannot hide;
// on an English page this marks that text as <span class="zh">, in the page as served and in
// whatever a page's script adds later. window.inPageLanguage(message) keeps the half of a
// server message "中文 / English" the page wants (one_language in language.py).
(function () {
  "use strict";
  const CJK = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]/;
  const pageIsEnglish = document.documentElement.lang === "en";

  window.inPageLanguage = function (message) {
    const text = String(message);
    const splits = [...text.matchAll(/(?: |(?<=[\u3000-\u303f\uff00-\uffef]))\/ (?=[A-Za-z0-9"'(])/g)].reverse();
    for (const split of splits) {
      const zh = text.slice(0, split.index);
      if (CJK.test(zh)) return pageIsEnglish ? text.slice(split.index + split[0].length) : zh;
    }
    return text;
  };
  if (!pageIsEnglish) return;

  function markBefore(english) {
    const text = english.previousSibling;
    if (!text || text.nodeType !== Node.TEXT_NODE) return;
    const start = text.data.search(CJK);
    if (start < 0) return;
    const chinese = start > 0 ? text.splitText(start) : text;
    const span = document.createElement("span");
    span.className = "zh";
    chinese.replaceWith(span);
    span.append(chinese);
  }

  function markWithin(root) {
    if (root.nodeType !== Node.ELEMENT_NODE) return;
    if (root.matches("span.en")) markBefore(root);
    root.querySelectorAll("span.en").forEach(markBefore);
  }

  markWithin(document.body);
  new MutationObserver((changes) => {
    for (const change of changes) change.addedNodes.forEach(markWithin);
  }).observe(document.body, { childList: true, subtree: true });
})();
