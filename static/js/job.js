// One job: follows its state live, and shows the text and line boxes when it ends.
(function () {
  "use strict";
  const card = document.getElementById("job");
  const id = +card.dataset.jobId;
  const text = document.getElementById("text");
  const pending = document.getElementById("text-pending");
  const downloads = document.getElementById("result-downloads");
  const svg = document.getElementById("boxes");
  const toggle = document.getElementById("show-boxes");
  const NS = "http://www.w3.org/2000/svg";
  const GIB = 1024 * 1024 * 1024;

  function gib(n) { return n === null || n === undefined ? "—" : (n / GIB).toFixed(2) + " GiB"; }

  // Peak GPU memory and the free memory at the start are known once the job ends.
  function fillGpu(gpu) {
    if (!gpu) return;
    card.querySelector('[data-gpu-field="peak"]').textContent = gib(gpu.peak_bytes);
    card.querySelector('[data-gpu-field="free_at_start"]').textContent = gib(gpu.free_at_start_bytes);
  }

  toggle.addEventListener("change", function () { svg.style.display = toggle.checked ? "" : "none"; });

  function drawBoxes(result) {
    svg.innerHTML = "";
    if (!result) return;
    if (result.image_size) svg.setAttribute("viewBox", "0 0 " + result.image_size[0] + " " + result.image_size[1]);
    (result.lines || []).forEach(function (line, i) {
      const poly = document.createElementNS(NS, "polygon");
      poly.setAttribute("points", line.box.map(function (p) { return p[0] + "," + p[1]; }).join(" "));
      poly.dataset.line = i;
      const title = document.createElementNS(NS, "title");
      title.textContent = line.text;
      poly.append(title);
      svg.append(poly);
    });
  }

  function loadResult() {
    fetch("result.json", { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        text.textContent = body.text;
        pending.hidden = true;
        downloads.hidden = false;
        drawBoxes(body.result);
        fillGpu(body.gpu);
      });
  }

  // The list of pages, read again as pages start and end.
  const pagesBox = document.getElementById("pages");
  let pagesSeen = null;
  function refreshPages(job) {
    if (!pagesBox) return;
    const key = job.state + ":" + job.page + ":" + job.progress;
    if (key === pagesSeen) return;
    pagesSeen = key;
    fetch(pagesBox.dataset.url, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) pagesBox.innerHTML = html; });
  }

  function apply(job) {
    const was = card.dataset.state;
    OcrDash.fill(card, job);
    refreshPages(job);
    if (job.state !== was && (job.state === "succeeded" || job.state === "failed" || job.state === "cancelled")) {
      loadResult();
    }
  }

  document.addEventListener("ocrdash:job", function (e) { if (e.detail.id === id) apply(e.detail); });
  // Events sent before the socket opened were missed: read the state again.
  document.addEventListener("ocrdash:connected", function () {
    fetch("status.json", { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) { if (job) OcrDash.publish(job); });
  });
})();
