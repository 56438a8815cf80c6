// Bars (progress, GPU memory, utilization) get their size from data-width / data-left, in percent:
// the Content-Security-Policy lets no style attribute through, but a script may set the style.
(function () {
  "use strict";
  document.querySelectorAll("[data-width]").forEach(function (el) { el.style.width = el.dataset.width + "%"; });
  document.querySelectorAll("[data-left]").forEach(function (el) { el.style.left = el.dataset.left + "%"; });
})();
