// The live connection every page shares: one websocket, reconnecting with backoff.
// Pages listen for `ocrdash:job` (detail = the job payload, core/events.py JobStatus),
// `ocrdash:<type>` for the other event types (`ocrdash:gpu.sample`, `ocrdash:backend.status`;
// detail = the whole event) and `ocrdash:connected` (detail.first: false after a reconnect),
// to re-read what they show.
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

  // Job events come from the web server and from the worker, so they may arrive out of order
  // (the worker's "running" before the upload's "queued"). A job never moves back on its own,
  // except when it is queued again: a move back is checked with the database before it is shown.
  const RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };
  const states = new Map();
  document.querySelectorAll("[data-job-id][data-state]").forEach(function (el) {
    states.set(+el.dataset.jobId, el.dataset.state);
  });

  function publish(job) {
    states.set(job.id, job.state);
    document.dispatchEvent(new CustomEvent("ocrdash:job", { detail: job }));
  }

  function recheck(job) {
    fetch(job.url + "status.json", { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (fresh) { if (fresh) publish(fresh); })
      .catch(function () { /* the next event or reconnect brings the page up to date */ });
  }

  function offer(job) {
    const known = states.get(job.id);
    if (known !== undefined && RANK[job.state] < RANK[known]) recheck(job);
    else publish(job);
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
        offer(event.job);
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
    // Pages hand in what they learn outside the websocket (an upload's answer, a status read):
    // `offer` for what may be older than the events already shown, `publish` for fresh reads.
    offer: offer,
    publish: publish,
    seconds: function (s) {
      if (s === null || s === undefined) return "—";
      return s < 100 ? s.toFixed(1) + " s" : Math.round(s) + " s";
    },
    positionText: function (job) {
      return job.queue_position ? "#" + job.queue_position + " in queue" : "";
    },
    // "7 of 23 pages done, 4 running · about 3 min left" while a job with pages runs.
    pageText: function (job) {
      if (job.state !== "running" || !job.page) return "";
      let s = (job.pages_done || 0) + " of " + job.pages + " pages done";
      if (job.pages_running) s += ", " + job.pages_running + " running";
      if (job.eta_seconds !== null && job.eta_seconds !== undefined) {
        const eta = job.eta_seconds;
        s += " · about " + (eta < 90 ? Math.max(1, Math.round(eta)) + " s" : Math.round(eta / 60) + " min") + " left";
      }
      return s;
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
        } else if (f === "page_progress") {
          el.textContent = OcrDash.pageText(job);
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
