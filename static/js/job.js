// One job: follows its state live; shows each page's layout (boxes in category colours, hover for
// the text, click to copy), the rendered result with typeset formulas, reads drawn regions and
// asks questions about the page shown.
(function () {
  "use strict";
  const card = document.getElementById("job");
  const id = +card.dataset.jobId;
  const text = document.getElementById("text");
  const pending = document.getElementById("text-pending");
  const downloads = document.getElementById("result-downloads");
  const layoutBox = document.getElementById("layout");
  const view = document.getElementById("page-view");
  const image = document.getElementById("page-image");
  const svg = document.getElementById("boxes");
  const tip = document.getElementById("box-tip");
  const toggle = document.getElementById("show-boxes");
  const rendered = document.getElementById("rendered");
  const warnings = document.getElementById("layout-warnings");
  const copyStatus = document.getElementById("copy-status");
  const pageSelect = document.getElementById("layout-page");
  const prev = document.getElementById("page-prev");
  const next = document.getElementById("page-next");
  const drawButton = document.getElementById("draw-region");
  const regionBox = document.getElementById("region-result");
  const NS = "http://www.w3.org/2000/svg";
  const GIB = 1024 * 1024 * 1024;
  const pages = +layoutBox.dataset.pages || 1;
  let page = 1;
  let layout = null; // the shown page's layout document

  function gib(n) { return n === null || n === undefined ? "—" : (n / GIB).toFixed(2) + " GiB"; }

  // Peak GPU memory and the free memory at the start are known once the job ends.
  function fillGpu(gpu) {
    if (!gpu) return;
    card.querySelector('[data-gpu-field="peak"]').textContent = gib(gpu.peak_bytes);
    card.querySelector('[data-gpu-field="free_at_start"]').textContent = gib(gpu.free_at_start_bytes);
  }

  // -- formulas ------------------------------------------------------------------------------
  function typeset(root) {
    if (!window.renderMathInElement) return;
    window.renderMathInElement(root, {
      delimiters: [
        { left: "$$", right: "$$", display: true },
        { left: "\\[", right: "\\]", display: true },
        { left: "\\(", right: "\\)", display: false },
        { left: "$", right: "$", display: false },
      ],
      throwOnError: false,
    });
  }

  // -- boxes ---------------------------------------------------------------------------------
  function elementOf(target) {
    if (!layout || !target || !target.dataset) return null;
    const index = +target.dataset.index;
    return layout.elements.find(function (e) { return e.index === index; }) || null;
  }

  function drawBoxes(doc) {
    svg.innerHTML = "";
    svg.setAttribute("viewBox", "0 0 " + doc.width + " " + doc.height);
    doc.elements.forEach(function (e) {
      if (!e.bbox) return;
      const [x1, y1, x2, y2] = e.bbox;
      const poly = document.createElementNS(NS, "polygon");
      // Scene text has its own outline (four corners); other elements their box.
      const corners = e.polygon || [[x1, y1], [x2, y1], [x2, y2], [x1, y2]];
      poly.setAttribute("points", corners.map(function (p) { return p[0] + "," + p[1]; }).join(" "));
      poly.setAttribute("class", "box cat-" + e.category.toLowerCase() + (e.polygon ? " scene" : ""));
      poly.dataset.index = e.index;
      poly.dataset.category = e.category;
      const title = document.createElementNS(NS, "title");
      title.textContent = e.category + ": " + e.text;
      poly.append(title);
      svg.append(poly);
    });
  }

  function showLayout(doc) {
    layout = doc;
    if (image.getAttribute("src") !== doc.image_url) image.src = doc.image_url;
    image.alt = "Page " + doc.page;
    drawBoxes(doc);
    rendered.innerHTML = doc.html;
    typeset(rendered);
    warnings.textContent = doc.warnings.join(" ");
    // The SVG task's drawing: only ever an <img> (its code never runs in this page).
    const drawing = document.getElementById("svg-image");
    if (drawing) {
      document.getElementById("svg-result").hidden = !doc.svg_url;
      if (doc.svg_url && drawing.getAttribute("src") !== doc.svg_url) drawing.src = doc.svg_url;
    }
    const read = doc.state === "succeeded";
    if (pages > 1) pending.hidden = read;
  }

  function loadLayout(number) {
    page = number;
    layoutBox.dataset.page = number;
    if (pageSelect) pageSelect.value = String(number);
    if (prev) prev.disabled = number <= 1;
    if (next) next.disabled = number >= pages;
    const label = layoutBox.querySelector('[data-layout="page-label"]');
    if (label) label.textContent = number;
    const url = layoutBox.dataset.layoutUrl.replace(/\/pages\/\d+\//, "/pages/" + number + "/");
    return fetch(url, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) { if (doc && doc.page === page) showLayout(doc); });
  }

  toggle.addEventListener("change", function () { svg.style.display = toggle.checked ? "" : "none"; });
  if (pageSelect) pageSelect.addEventListener("change", function () { loadLayout(+pageSelect.value); });
  if (prev) prev.addEventListener("click", function () { if (page > 1) loadLayout(page - 1); });
  if (next) next.addEventListener("click", function () { if (page < pages) loadLayout(page + 1); });

  // Hover: the element's category and text beside the pointer, and its rendered block marked.
  function mark(index, on) {
    rendered.querySelectorAll('[data-index="' + index + '"]').forEach(function (el) {
      el.classList.toggle("hover", on);
    });
  }
  svg.addEventListener("pointerover", function (ev) {
    const e = elementOf(ev.target);
    if (!e || drawing) return;
    tip.textContent = "";
    const cat = document.createElement("strong");
    cat.textContent = e.category;
    const body = document.createElement("span");
    body.textContent = e.text || "(no text)";
    tip.append(cat, body);
    tip.hidden = false;
    mark(e.index, true);
  });
  svg.addEventListener("pointermove", function (ev) {
    if (tip.hidden) return;
    const box = view.getBoundingClientRect();
    const x = ev.clientX - box.left + 14;
    tip.style.left = Math.min(x, Math.max(0, box.width - tip.offsetWidth)) + "px";
    tip.style.top = (ev.clientY - box.top + 18) + "px";
  });
  svg.addEventListener("pointerout", function (ev) {
    const e = elementOf(ev.target);
    tip.hidden = true;
    if (e) mark(e.index, false);
  });

  // Click: copy the element's text. navigator.clipboard exists only on https and localhost; a
  // team server on plain http gets the older execCommand way.
  function copy(value) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(value);
    const area = document.createElement("textarea");
    area.value = value;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  function copied(what, value) {
    copy(value).then(
      function () { copyStatus.textContent = "Copied " + what + " (" + value.length + " characters)."; },
      function () { copyStatus.textContent = "The browser did not allow copying; select the text instead."; }
    );
  }
  svg.addEventListener("click", function (ev) {
    const e = elementOf(ev.target);
    if (!e || drawing) return;
    copied("the " + e.category + " text", e.text);
  });

  // -- reading a drawn region ----------------------------------------------------------------
  let drawing = false;
  let start = null;
  let rect = null;

  function pagePoint(ev) {
    const box = image.getBoundingClientRect();
    const w = layout ? layout.width : image.naturalWidth;
    const h = layout ? layout.height : image.naturalHeight;
    const x = Math.max(0, Math.min(box.width, ev.clientX - box.left)) * w / box.width;
    const y = Math.max(0, Math.min(box.height, ev.clientY - box.top)) * h / box.height;
    return [Math.round(x), Math.round(y)];
  }

  function setDrawing(on) {
    drawing = on;
    drawButton.setAttribute("aria-pressed", on ? "true" : "false");
    view.classList.toggle("drawing", on);
    document.getElementById("layout-hint").textContent = on
      ? "Drag a box around the text to read; Esc cancels."
      : "Hover over a box to see its text; click it to copy the text.";
  }
  drawButton.addEventListener("click", function () { setDrawing(!drawing); });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape" && drawing) setDrawing(false); });

  view.addEventListener("pointerdown", function (ev) {
    if (!drawing || ev.button !== 0) return;
    ev.preventDefault();
    view.setPointerCapture(ev.pointerId);
    start = pagePoint(ev);
    if (rect) rect.remove();
    rect = document.createElementNS(NS, "rect");
    rect.setAttribute("class", "region");
    svg.style.display = "";
    svg.append(rect);
  });
  view.addEventListener("pointermove", function (ev) {
    if (!start || !rect) return;
    const [x, y] = pagePoint(ev);
    rect.setAttribute("x", Math.min(x, start[0]));
    rect.setAttribute("y", Math.min(y, start[1]));
    rect.setAttribute("width", Math.abs(x - start[0]));
    rect.setAttribute("height", Math.abs(y - start[1]));
  });
  view.addEventListener("pointerup", function (ev) {
    if (!start) return;
    const end = pagePoint(ev);
    const box = [Math.min(start[0], end[0]), Math.min(start[1], end[1]),
      Math.max(start[0], end[0]), Math.max(start[1], end[1])];
    start = null;
    setDrawing(false);
    if (box[2] - box[0] < 4 || box[3] - box[1] < 4) {
      if (rect) rect.remove();
      copyStatus.textContent = "That box is too small: drag over the text you want.";
      return;
    }
    readRegion(box);
  });

  let regionJob = null;
  let regionTextUrl = null;
  function regionField(name) { return regionBox.querySelector('[data-region="' + name + '"]'); }

  function showRegionText(value) {
    regionField("text").textContent = value;
    regionField("status").textContent = value ? "" : "No text was found in that region.";
    const button = regionField("copy");
    button.hidden = !value;
    button.onclick = function () { copied("the region's text", value); };
  }

  function readRegion(box) {
    const token = layoutBox.querySelector("input[name=csrfmiddlewaretoken]").value;
    regionBox.hidden = false;
    regionField("title").textContent = "Region [" + box.join(", ") + "] of page " + page;
    regionField("text").textContent = "";
    regionField("copy").hidden = true;
    regionField("status").textContent = "Sending…";
    fetch(layoutBox.dataset.regionUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token, Accept: "application/json" },
      body: JSON.stringify({ page: page, bbox: box }),
    })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (answer) {
        if (!answer.ok) { regionField("status").textContent = answer.body.error || "The region was refused."; return; }
        const job = answer.body;
        regionJob = job.id;
        regionTextUrl = job.text_url;
        const link = regionField("link");
        link.href = job.url;
        link.textContent = "job #" + job.id;
        if (job.state === "succeeded") {
          showRegionText(job.text || "");
          regionField("status").textContent += job.reused ? " (the same region was read before)" : "";
        } else {
          regionField("status").textContent = "Queued as job #" + job.id + "…";
        }
      })
      .catch(function () { regionField("status").textContent = "The server did not answer."; });
  }

  function followRegion(job) {
    if (job.id !== regionJob) return;
    if (job.state === "running") regionField("status").textContent = "Reading…";
    if (job.state === "queued") regionField("status").textContent = OcrDash.positionText(job) || "Queued…";
    if (job.state === "failed" || job.state === "cancelled") {
      regionField("status").textContent = "The region job " + job.state + ": " + (job.message || "");
    }
    if (job.state === "succeeded") {
      fetch(regionTextUrl)
        .then(function (r) { return r.text(); })
        .then(showRegionText);
    }
  }

  // -- asking a question about the page shown -------------------------------------------------
  const askForm = document.getElementById("ask-form");
  const askBox = document.getElementById("ask-result");
  const askInput = document.getElementById("ask-question");
  let askJob = null;
  let askTextUrl = null;
  function askField(name) { return askBox.querySelector('[data-ask="' + name + '"]'); }

  function showAnswer(value) {
    askField("text").textContent = value;
    askField("status").textContent = value ? "" : "The model gave no answer.";
    const button = askField("copy");
    button.hidden = !value;
    button.onclick = function () { copied("the answer", value); };
  }

  if (askForm && askInput) {
    askForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      const question = askInput.value.trim();
      const token = layoutBox.querySelector("input[name=csrfmiddlewaretoken]").value;
      askBox.hidden = false;
      // The question is shown as text, never as markup.
      askField("title").textContent = "Page " + page + ": " + question;
      askField("text").textContent = "";
      askField("copy").hidden = true;
      askField("status").textContent = "Sending…";
      fetch(askForm.action, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token, Accept: "application/json" },
        body: JSON.stringify({ page: page, question: question }),
      })
        .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
        .then(function (answer) {
          if (!answer.ok) { askField("status").textContent = answer.body.error || "The question was refused."; return; }
          const job = answer.body;
          askJob = job.id;
          askTextUrl = job.text_url;
          const link = askField("link");
          link.href = job.url;
          link.textContent = "job #" + job.id;
          if (job.state === "succeeded") {
            showAnswer(job.text || "");
            askField("status").textContent += job.reused ? " (the same question was asked before)" : "";
          } else {
            askField("status").textContent = "Queued as job #" + job.id + "…";
            // It may have ended before its id was known here: its events would have gone unseen.
            fetch("/jobs/" + job.id + "/status.json", { headers: { Accept: "application/json" } })
              .then(function (r) { return r.ok ? r.json() : null; })
              .then(function (state) { if (state && state.state !== "queued") followQuestion(state); });
          }
        })
        .catch(function () { askField("status").textContent = "The server did not answer."; });
    });
  }

  function followQuestion(job) {
    if (job.id !== askJob) return;
    if (job.state === "running") askField("status").textContent = "Thinking…";
    if (job.state === "queued") askField("status").textContent = OcrDash.positionText(job) || "Queued…";
    if (job.state === "failed" || job.state === "cancelled") {
      askField("status").textContent = "The question job " + job.state + ": " + (job.message || "");
    }
    if (job.state === "succeeded") {
      fetch(askTextUrl)
        .then(function (r) { return r.text(); })
        .then(showAnswer);
    }
  }

  // -- the job's own state -------------------------------------------------------------------
  function loadResult() {
    fetch("result.json", { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        text.textContent = body.text;
        pending.hidden = true;
        downloads.hidden = false;
        fillGpu(body.gpu);
      });
    loadLayout(page);
  }

  // The list of pages, read again as pages start and end; the shown page's layout when it is read.
  const pagesBox = document.getElementById("pages");
  let pagesSeen = null;
  function refreshPages(job) {
    if (!pagesBox) return;
    const key = job.state + ":" + job.page + ":" + job.progress;
    if (key === pagesSeen) return;
    pagesSeen = key;
    fetch(pagesBox.dataset.url, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        pagesBox.innerHTML = html;
        const row = pagesBox.querySelector('[data-page="' + page + '"]');
        if (row && row.dataset.state === "succeeded" && (!layout || layout.state !== "succeeded")) loadLayout(page);
      });
  }

  // Tabs: the rendered page or the plain text.
  const tabs = [document.getElementById("tab-rendered"), document.getElementById("tab-text")];
  tabs.forEach(function (tab) {
    tab.addEventListener("click", function () {
      tabs.forEach(function (t) {
        const on = t === tab;
        t.setAttribute("aria-selected", on ? "true" : "false");
        document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
      });
    });
  });

  function apply(job) {
    const was = card.dataset.state;
    OcrDash.fill(card, job);
    refreshPages(job);
    if (job.state !== was && (job.state === "succeeded" || job.state === "failed" || job.state === "cancelled")) {
      loadResult();
    }
  }

  document.addEventListener("ocrdash:job", function (e) {
    if (e.detail.id === id) apply(e.detail);
    else { followRegion(e.detail); followQuestion(e.detail); }
  });
  // Events sent before the socket opened were missed: read the state again.
  document.addEventListener("ocrdash:connected", function () {
    fetch("status.json", { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) { if (job) OcrDash.publish(job); });
    if (regionJob !== null) {
      fetch("/jobs/" + regionJob + "/status.json", { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) { if (job) followRegion(job); });
    }
    if (askJob !== null) {
      fetch("/jobs/" + askJob + "/status.json", { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) { if (job) followQuestion(job); });
    }
  });

  typeset(rendered);
  loadLayout(1);
})();
