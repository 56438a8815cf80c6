// ReDoc for /api/redoc/, started from a static file (the Content-Security-Policy runs no inline script).
(function () {
  "use strict";
  const root = document.getElementById("redoc-container");
  let settings = {};
  try { settings = JSON.parse(root.dataset.settings || "{}"); } catch (e) { settings = {}; }
  window.Redoc.init(root.dataset.schemaUrl, settings, root);
})();
