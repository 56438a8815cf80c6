// The GPU dashboard: per GPU the memory gauge, the figures, a chart of the last ten minutes and the
// processes holding memory, from `gpu.sample` events (about one a second; shapes in core/events.py);
// beside it the running job, the queue (`job.status`) and each worker's backend (`backend.status`).
// The page starts from what the server rendered and the history it embedded (#gpu-history).
(function () {
  "use strict";
  const GIB = 1024 * 1024 * 1024;
  const WINDOW_SECONDS = 600; // what the chart shows
  const GAP_SECONDS = 5; // no sample for this long breaks the line
  const STALE_SECONDS = 15; // a sample older than this: the monitor is not sending
  const CHART_HEIGHT = 170;
  const NO_GPU = "No NVIDIA GPU visible: jobs run on the CPU";
  const ROLE_LABELS = JSON.parse(document.getElementById("role-labels").textContent); // core/containers.py
  const BACKEND_STATES = ["unloaded", "loading", "ready", "failed"];
  const USED_COLOR = "#0969da";
  const UTIL_COLOR = "#e16f24";

  const root = document.getElementById("dashboard");
  const gpusEl = document.getElementById("gpus");
  const noneEl = document.getElementById("gpu-none");
  const messageEl = document.getElementById("gpu-message");
  const waitingHint = document.getElementById("gpu-waiting-hint");
  const staleEl = document.getElementById("gpu-stale");
  const factsEl = document.getElementById("gpu-facts");
  const panelTemplate = document.getElementById("gpu-panel-template");
  const workerTemplate = document.getElementById("worker-template");
  const runningEl = document.getElementById("running");
  const runningEmpty = document.getElementById("running-empty");
  const queueBody = document.querySelector("#queue tbody");
  const queueEmpty = document.getElementById("queue-empty");
  const queueCount = document.getElementById("queue-count");
  const workersEl = document.getElementById("workers");
  const workersEmpty = document.getElementById("workers-empty");
  const backendNotice = document.getElementById("backend-notice");

  // The server's clock, to tell the age of a sample whatever the browser's clock says.
  const clockOffset = parseFloat(root.dataset.serverTime) - Date.now() / 1000;
  // The server lists the first waiting jobs; beyond that the count it gave stays as it is.
  const queueCountLive = queueBody.rows.length >= (parseInt(queueCount.textContent.replace(/\D/g, ""), 10) || 0);

  const series = new Map(); // GPU index -> {t: [], used: [], util: [], total}
  const charts = new Map(); // GPU index -> uPlot
  const processKeys = new Map(); // GPU index -> the process list last drawn
  let lastTaken = null;

  function gib(n) { return n === null || n === undefined ? "—" : (n / GIB).toFixed(2) + " GiB"; }
  function percent(part, whole) { return part && whole ? Math.max(0, Math.min(100, (100 * part) / whole)) : 0; }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(seconds) {
    const d = new Date(seconds * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + (d.getSeconds() ? ":" + pad(d.getSeconds()) : "");
  }
  function esc(s) {
    const d = document.createElement("div");
    d.textContent = s === null || s === undefined ? "" : String(s);
    return d.innerHTML;
  }

  // -- chart data ----------------------------------------------------------------------------

  function dataFor(index) {
    let d = series.get(index);
    if (!d) {
      d = { t: [], used: [], util: [], total: null };
      series.set(index, d);
    }
    return d;
  }

  function addPoint(index, t, device) {
    const d = dataFor(index);
    const last = d.t.length ? d.t[d.t.length - 1] : null;
    if (last !== null && t <= last) return false; // already drawn (the page's history holds it)
    if (last !== null && t - last > GAP_SECONDS) {
      // The monitor (or the GPU) was away: a gap in the line, not a slope across it.
      d.t.push(last + 1);
      d.used.push(null);
      d.util.push(null);
    }
    d.t.push(t);
    d.used.push(device.used === null || device.used === undefined ? null : device.used / GIB);
    d.util.push(device.utilization === null || device.utilization === undefined ? null : device.utilization);
    if (device.total) d.total = device.total;
    const since = t - WINDOW_SECONDS;
    let drop = 0;
    while (drop < d.t.length && d.t[drop] < since) drop++;
    if (drop) {
      d.t.splice(0, drop);
      d.used.splice(0, drop);
      d.util.splice(0, drop);
    }
    return true;
  }

  function makeChart(panel, index) {
    const el = panel.querySelector('[data-gpu="chart"]');
    const d = dataFor(index);
    const axis = { stroke: "#59636e", grid: { stroke: "#eaeef2", width: 1 }, ticks: { stroke: "#d1d9e0", width: 1, size: 4 }, font: "11px sans-serif" };
    const opts = {
      width: Math.max(200, el.clientWidth || 600),
      height: CHART_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: {
        x: {
          time: true,
          range: function () {
            const end = d.t.length ? d.t[d.t.length - 1] : Date.now() / 1000 + clockOffset;
            return [end - WINDOW_SECONDS, end];
          },
        },
        mem: { range: function (u, min, max) { return [0, d.total ? d.total / GIB : Math.max(1, max || 0)]; } },
        pct: { range: [0, 100] },
      },
      series: [
        {},
        { label: "Memory used", scale: "mem", stroke: USED_COLOR, width: 2, fill: "rgba(9, 105, 218, 0.12)" },
        { label: "Utilization", scale: "pct", stroke: UTIL_COLOR, width: 1.5 },
      ],
      axes: [
        Object.assign({}, axis, { size: 30, values: function (u, splits) { return splits.map(clock); } }),
        Object.assign({}, axis, {
          scale: "mem",
          size: 64,
          values: function (u, splits) { return splits.map(function (v) { return v + " GiB"; }); },
        }),
        Object.assign({}, axis, {
          scale: "pct",
          side: 1,
          size: 44,
          grid: { show: false },
          values: function (u, splits) { return splits.map(function (v) { return v + " %"; }); },
        }),
      ],
    };
    const chart = new uPlot(opts, [d.t, d.used, d.util], el);
    charts.set(index, chart);
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        const width = el.clientWidth;
        if (width && width !== chart.width) chart.setSize({ width: width, height: CHART_HEIGHT });
      }).observe(el);
    }
    el.dataset.points = d.t.length;
    return chart;
  }

  function redraw(index) {
    const chart = charts.get(index);
    const d = series.get(index);
    if (!chart || !d) return;
    chart.setData([d.t, d.used, d.util]);
    chart.root.parentElement.dataset.points = d.t.length;
  }

  // -- GPU panels ----------------------------------------------------------------------------

  function panelFor(index) {
    let panel = gpusEl.querySelector('[data-gpu-index="' + index + '"]');
    if (panel) return panel;
    panel = panelTemplate.content.firstElementChild.cloneNode(true);
    panel.dataset.gpuIndex = index;
    panel.setAttribute("aria-label", "GPU " + index);
    const after = Array.from(gpusEl.children).find(function (p) { return +p.dataset.gpuIndex > index; });
    gpusEl.insertBefore(panel, after || null);
    makeChart(panel, index);
    return panel;
  }

  function set(panel, field, text) {
    panel.querySelectorAll('[data-gpu="' + field + '"]').forEach(function (el) { el.textContent = text; });
  }

  function fillProcesses(panel, device) {
    const processes = (device.processes || []).slice().sort(function (a, b) { return (b.used_bytes || 0) - (a.used_bytes || 0); });
    const key = JSON.stringify(processes);
    if (processKeys.get(device.index) === key) return;
    processKeys.set(device.index, key);
    const body = panel.querySelector('[data-gpu="processes"]');
    body.innerHTML = processes.map(function (p) {
      const badge = p.role ? ' <span class="badge role-' + esc(p.role) + '">' + esc(ROLE_LABELS[p.role] || p.role) + "</span>" : "";
      return '<tr data-pid="' + esc(p.pid) + '"' + (p.role ? ' data-role="' + esc(p.role) + '"' : "") + ">" +
        "<td>" + esc(p.pid) + "</td><td>" + esc(p.name) + badge + "</td><td>" + esc(p.container || "—") + "</td>" +
        '<td class="num">' + gib(p.used_bytes) + "</td></tr>";
    }).join("");
    panel.querySelector('[data-gpu="no-processes"]').hidden = processes.length > 0;
  }

  function fillPanel(panel, device) {
    const usedPct = percent(device.used, device.total);
    const reservedPct = percent(device.reserved, device.total);
    set(panel, "name", device.name);
    set(panel, "index", device.index);
    set(panel, "cc", device.compute_capability ? " · CUDA " + device.compute_capability : "");
    set(panel, "used", gib(device.used));
    set(panel, "used-pct", Math.round(usedPct) + " %");
    set(panel, "free", gib(device.free));
    set(panel, "total", gib(device.total));
    set(panel, "reserved-note", device.reserved ? gib(device.reserved) + " reserved by the driver" : "");
    panel.querySelector('[data-gpu="rest"]').style.left = usedPct.toFixed(1) + "%";
    const reserved = panel.querySelector('[data-gpu="reserved"]');
    reserved.style.width = reservedPct.toFixed(1) + "%";
    reserved.title = device.reserved ? gib(device.reserved) + " kept back by the driver" : "";
    const gauge = panel.querySelector(".gauge");
    gauge.setAttribute("aria-valuenow", usedPct.toFixed(1));
    gauge.setAttribute("aria-valuetext", gib(device.used) + " used of " + gib(device.total));
    const util = device.utilization;
    set(panel, "utilization", util === null || util === undefined ? "—" : util + " %");
    panel.querySelector('[data-gpu="utilization-bar"]').style.width = (util || 0) + "%";
    set(panel, "temperature", device.temperature === null || device.temperature === undefined ? "—" : device.temperature + " °C");
    set(panel, "power", device.power === null || device.power === undefined ? "—" : device.power.toFixed(1) + " W");
    set(panel, "power-limit", device.power_limit ? "of " + Math.round(device.power_limit) + " W" : "");
    panel.querySelector('[data-gpu="power-bar"]').style.width = percent(device.power, device.power_limit).toFixed(1) + "%";
    fillProcesses(panel, device);
  }

  function showNone(text, waiting) {
    noneEl.hidden = false;
    gpusEl.hidden = true;
    messageEl.textContent = text;
    waitingHint.hidden = !waiting;
  }

  function applySample(sample) {
    lastTaken = sample.taken_at;
    factsEl.textContent = sample.driver_version ? "driver " + sample.driver_version : "";
    checkStale();
    const devices = sample.devices || [];
    if (!devices.length) {
      showNone(sample.error || NO_GPU, false);
      return;
    }
    noneEl.hidden = true;
    gpusEl.hidden = false;
    const seen = new Set();
    devices.forEach(function (device) {
      seen.add(device.index);
      const panel = panelFor(device.index);
      fillPanel(panel, device);
      if (addPoint(device.index, sample.taken_at, device)) redraw(device.index);
    });
    Array.from(gpusEl.children).forEach(function (panel) {
      const index = +panel.dataset.gpuIndex;
      if (seen.has(index)) return;
      const chart = charts.get(index);
      if (chart) chart.destroy();
      charts.delete(index);
      processKeys.delete(index);
      panel.remove();
    });
  }

  function checkStale() {
    if (lastTaken === null) return;
    const age = Date.now() / 1000 + clockOffset - lastTaken;
    staleEl.hidden = age <= STALE_SECONDS;
    if (!staleEl.hidden) {
      staleEl.textContent = "The last GPU sample is " + Math.round(age) + " s old: is the GPU monitor running?";
    }
  }

  // -- jobs ----------------------------------------------------------------------------------

  function updateRunning(job) {
    let li = runningEl.querySelector('li[data-job-id="' + job.id + '"]');
    if (job.state !== "running") {
      if (li) li.remove();
    } else {
      if (!li) {
        li = document.createElement("li");
        li.dataset.jobId = job.id;
        li.innerHTML =
          '<div class="row-between"><a class="name" data-field="name"></a><span class="hint" data-field="owner"></span></div>' +
          '<div class="progress" data-field="progress"><div></div></div>' +
          '<div class="hint"><span data-field="backend"></span> · <span data-field="percent"></span><span class="message" data-field="message"></span></div>';
        li.querySelector("a").href = job.url;
        runningEl.append(li);
      }
      OcrDash.fill(li, job);
      li.querySelector('[data-field="percent"]').textContent = Math.round((job.progress || 0) * 100) + " %";
    }
    runningEmpty.hidden = runningEl.children.length > 0;
  }

  function updateQueue(job) {
    let tr = queueBody.querySelector('tr[data-job-id="' + job.id + '"]');
    if (job.state !== "queued") {
      if (tr) tr.remove();
    } else {
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.jobId = job.id;
        tr.innerHTML = "<td></td><td><a></a></td><td></td>";
        tr.querySelector("a").href = job.url;
        queueBody.append(tr);
      }
      tr.dataset.state = "queued";
      tr.dataset.position = job.queue_position || 9999;
      tr.cells[0].textContent = job.queue_position || "";
      tr.cells[1].firstElementChild.textContent = job.name;
      tr.cells[2].textContent = job.owner;
      Array.from(queueBody.rows)
        .sort(function (a, b) { return +a.dataset.position - +b.dataset.position; })
        .forEach(function (r) { queueBody.append(r); });
    }
    const n = queueBody.rows.length;
    queueEmpty.hidden = n > 0;
    if (queueCountLive) queueCount.textContent = n ? n + " waiting" : "";
  }

  // -- backends ------------------------------------------------------------------------------

  function fillWorker(li, status) {
    const state = BACKEND_STATES.indexOf(status.state) >= 0 ? status.state : "unloaded";
    function field(name) { return li.querySelector('[data-worker-field="' + name + '"]'); }
    li.dataset.state = state;
    field("backend").textContent = status.backend || "no model";
    field("hostname").textContent = status.worker;
    field("state").textContent = state;
    field("state").className = "bstate bstate-" + state;
    const known = status.progress !== null && status.progress !== undefined;
    field("loading").hidden = state !== "loading";
    field("progress").classList.toggle("indeterminate", !known);
    field("progress").firstElementChild.style.width = (known ? Math.round(status.progress * 100) : 0) + "%";
    field("percent").textContent = known ? Math.round(status.progress * 100) + " %" : "";
    field("detail").textContent = status.detail || "";
    field("summary").textContent = state !== "unloaded" && status.plan && status.plan.summary ? status.plan.summary : "";
    field("memory").textContent = status.memory_bytes ? gib(status.memory_bytes) : "none";
  }

  function applyBackend(status) {
    if (!status.worker) {
      // Not about one worker: e.g. an admin changed the backend settings.
      backendNotice.textContent = status.detail || "";
      backendNotice.hidden = !status.detail;
      return;
    }
    let li = Array.from(workersEl.children).find(function (el) { return el.dataset.worker === status.worker; });
    if (!li) {
      li = workerTemplate.content.firstElementChild.cloneNode(true);
      li.dataset.worker = status.worker;
      workersEl.append(li);
    }
    fillWorker(li, status);
    workersEmpty.hidden = true;
  }

  // -- start ---------------------------------------------------------------------------------

  JSON.parse(document.getElementById("gpu-history").textContent).forEach(function (point) {
    point.devices.forEach(function (device) { addPoint(device.index, point.t, device); });
  });
  gpusEl.querySelectorAll("[data-gpu-index]").forEach(function (panel) { makeChart(panel, +panel.dataset.gpuIndex); });
  const initial = JSON.parse(document.getElementById("gpu-sample").textContent);
  if (initial) {
    if ((initial.devices || []).length) applySample(initial);
    else { lastTaken = initial.taken_at; checkStale(); }
  }
  setInterval(checkStale, 2000);

  document.addEventListener("ocrdash:gpu.sample", function (e) { applySample(e.detail); });
  document.addEventListener("ocrdash:backend.status", function (e) { applyBackend(e.detail); });
  document.addEventListener("ocrdash:job", function (e) {
    updateRunning(e.detail);
    updateQueue(e.detail);
  });
  // Events sent while the connection was down were missed: read the page again.
  document.addEventListener("ocrdash:connected", function (e) { if (!e.detail.first) location.reload(); });

  // For the browser tests and the curious: the charts and the data they draw.
  window.OcrDashGpu = { charts: charts, series: series };
})();
