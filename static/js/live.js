// The live connection every page shares: one websocket, reconnecting with backoff.
// Pages listen for `ocrdash:job` (detail = the job payload, see ocr_app/events.py)
// and `ocrdash:connected` (detail.first: false after a reconnect), to re-read what they show.
(function () {
  "use strict";
  const indicator = document.getElementById("live-indicator");
  let delay = 500;
  let everConnected = false;

  function setIndicator(text, cls) {
    if (!indicator) return;
    indicator.textContent = text;
    indicator.className = "live " + cls;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws/events/");
    ws.onopen = function () {
      delay = 500;
      setIndicator("live", "on");
      // Events sent before this moment were missed: pages read their state again on this.
      document.dispatchEvent(new CustomEvent("ocrdash:connected", { detail: { first: !everConnected } }));
      everConnected = true;
    };
    ws.onmessage = function (msg) {
      let event;
      try { event = JSON.parse(msg.data); } catch (e) { return; }
      if (event.type === "job.status" && event.job) {
        document.dispatchEvent(new CustomEvent("ocrdash:job", { detail: event.job }));
      } else if (event.type) {
        document.dispatchEvent(new CustomEvent("ocrdash:" + event.type, { detail: event }));
      }
    };
    ws.onclose = function (ev) {
      if (ev.code === 4401) { setIndicator("logged out", "off"); return; }
      setIndicator("reconnecting…", "off");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  window.OcrDash = {
    seconds: function (s) {
      if (s === null || s === undefined) return "—";
      return s < 100 ? s.toFixed(1) + " s" : Math.round(s) + " s";
    },
    positionText: function (job) {
      return job.queue_position ? "#" + job.queue_position + " in queue" : "";
    },
    // Updates every [data-field] inside `root` from the payload.
    fill: function (root, job) {
      root.dataset.state = job.state;
      root.querySelectorAll("[data-field]").forEach(function (el) {
        const f = el.dataset.field;
        if (f === "state") {
          el.textContent = job.state;
          el.className = "state state-" + job.state;
        } else if (f === "queue_position") {
          el.textContent = OcrDash.positionText(job) || (el.tagName === "DD" ? "—" : "");
        } else if (f === "waited_seconds" || f === "ran_seconds") {
          el.textContent = OcrDash.seconds(job[f]);
        } else if (f === "progress") {
          el.hidden = job.state !== "running";
          el.firstElementChild.style.width = Math.round((job.progress || 0) * 100) + "%";
        } else if (f in job) {
          el.textContent = job[f] || (f === "backend" ? "—" : "");
        }
      });
    },
  };
  connect();
})();
