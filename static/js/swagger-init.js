// Swagger UI for /api/docs/, started from a static file (the Content-Security-Policy runs no
// inline script): the schema's address and the settings come from the page's data attributes.
// Requests the page "tries out" carry the session and, when they change something, the CSRF token
// from Django's cookie, like the pages' own calls.
(function () {
  "use strict";
  const root = document.getElementById("swagger-ui");

  function cookie(name) {
    const found = document.cookie.split("; ").find(function (c) { return c.indexOf(name + "=") === 0; });
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  let settings = {};
  try { settings = JSON.parse(root.dataset.settings || "{}"); } catch (e) { settings = {}; }
  window.ui = window.SwaggerUIBundle(Object.assign({
    url: root.dataset.schemaUrl,
    dom_id: "#swagger-ui",
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // No badge from swagger.io's validator: nothing is fetched from another site.
    validatorUrl: null,
    requestInterceptor: function (request) {
      if (request.method && request.method !== "GET") request.headers[root.dataset.csrfHeader] = cookie("csrftoken");
      return request;
    },
  }, settings));
})();
