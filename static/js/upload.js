// Upload page: drag and drop or pick files, send them (in batches that fit a request), show each job as it is queued
// and follow it live; the queue panel follows every job of the team.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  const input = document.getElementById("id_files");
  const zone = document.getElementById("dropzone");
  const errors = document.getElementById("upload-errors");
  const mine = document.querySelector("#my-jobs tbody");
  const queue = document.querySelector("#queue tbody");
  const lang = document.getElementById("id_language");
  const reads = document.getElementById("lang-reads");
  const me = document.body.dataset.user;

  function showReads() {
    const opt = lang.options[lang.selectedIndex];
    const what = opt ? opt.dataset.reads.replace(/\.$/, "") : "";
    reads.textContent = opt ? "Reads: " + what + ". dots.ocr (when a GPU backend runs) reads every script." : "";
  }
  lang.addEventListener("change", showReads);
  showReads();

  function esc(s) {
    const d = document.createElement("div");
    d.textContent = s == null ? "" : String(s);
    return d.innerHTML;
  }

  function rowFor(job) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.id;
    tr.innerHTML =
      '<td class="thumb"><a href="' + job.url + '"><img src="' + job.url + 'thumbnail.jpg" alt="" width="48" height="48"></a></td>' +
      '<td><a class="name" href="' + job.url + '">' + esc(job.name) + "</a>" +
      '<div class="preview" data-field="text_preview"></div><div class="message" data-field="message"></div></td>' +
      '<td><span data-field="state"></span> <span class="position" data-field="queue_position"></span></td>' +
      '<td data-field="backend"></td><td><time>just now</time></td>';
    OcrDash.fill(tr, job);
    return tr;
  }

  function upsertMine(job) {
    let tr = mine.querySelector('tr[data-job-id="' + job.id + '"]');
    if (!tr) {
      tr = rowFor(job);
      mine.prepend(tr);
      document.getElementById("my-jobs-empty").hidden = true;
    } else {
      OcrDash.fill(tr, job);
    }
  }

  function updateQueue(job) {
    let tr = queue.querySelector('tr[data-job-id="' + job.id + '"]');
    if (job.state !== "queued" && job.state !== "running") {
      if (tr) tr.remove();
    } else {
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.jobId = job.id;
        tr.innerHTML = "<td></td><td><a href=\"" + job.url + "\">" + esc(job.name) + "</a></td><td>" + esc(job.owner) + "</td><td><span></span></td>";
        queue.append(tr);
      }
      tr.cells[0].textContent = job.state === "running" ? "▶" : (job.queue_position || "");
      tr.dataset.state = job.state;
      tr.dataset.position = job.state === "running" ? 0 : (job.queue_position || 9999);
      const badge = tr.cells[3].firstElementChild;
      badge.textContent = job.state;
      badge.className = "state state-" + job.state;
      // Keep the table in queue order.
      Array.from(queue.rows)
        .sort(function (a, b) { return (+a.dataset.position || 0) - (+b.dataset.position || 0); })
        .forEach(function (r) { queue.append(r); });
    }
    document.getElementById("queue-empty").hidden = queue.rows.length > 0;
  }

  function showError(text) {
    const li = document.createElement("li");
    li.className = "msg-error";
    li.textContent = text;
    errors.append(li);
  }

  // A request carries at most data-max-request bytes (the server refuses more before reading it):
  // files go in batches that fit, one request after another. A file over the upload limit is
  // refused here, by name, and not sent.
  const PART_OVERHEAD = 1024; // a multipart part's headers, generously
  function batches(files) {
    const maxRequest = +form.dataset.maxRequest || Infinity;
    const maxUpload = +form.dataset.maxUpload || Infinity;
    const out = [];
    let batch = [], size = 16 * 1024; // the form's other fields
    Array.from(files).forEach(function (f) {
      if (f.size > maxUpload) {
        showError(f.name + ": the file is larger than " + form.dataset.maxUploadText + ", the largest accepted. It was not sent.");
        return;
      }
      const cost = f.size + PART_OVERHEAD;
      if (batch.length && size + cost > maxRequest) { out.push(batch); batch = []; size = 16 * 1024; }
      batch.push(f);
      size += cost;
    });
    if (batch.length) out.push(batch);
    return out;
  }

  function sendBatch(files) {
    const data = new FormData(form);
    data.delete("files");
    files.forEach(function (f) { data.append("files", f, f.name); });
    return fetch(form.action, { method: "POST", body: data, headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().catch(function () {
          return { jobs: [], refused: [{ name: "", error: "The server answered " + r.status + " " + r.statusText + "." }] };
        });
      })
      .then(function (body) {
        // The worker may have taken a job already: its events are newer than this answer.
        (body.jobs || []).forEach(OcrDash.offer);
        (body.refused || []).forEach(function (r) { showError(r.error); });
      })
      .catch(function (e) {
        showError("Upload failed: " + e.message + ". Nothing was lost on the server; try again.");
      });
  }

  function send(files) {
    if (!files.length) return;
    errors.innerHTML = "";
    const most = +form.dataset.maxFiles;
    if (most && files.length > most) {
      // Refused here, before sending megabytes the server would refuse as a whole anyway.
      showError(files.length + " files at once is too many: send at most " + most + " per upload. Nothing was queued.");
      input.value = "";
      return;
    }
    zone.classList.add("busy");
    batches(files)
      .reduce(function (previous, batch) { return previous.then(function () { return sendBatch(batch); }); },
        Promise.resolve())
      .finally(function () { zone.classList.remove("busy"); input.value = ""; });
  }

  input.addEventListener("change", function () { send(input.files); });
  ["dragenter", "dragover"].forEach(function (t) {
    zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) { send(e.dataTransfer.files); });

  document.addEventListener("ocrdash:job", function (e) {
    const job = e.detail;
    if (job.owner === me || mine.querySelector('tr[data-job-id="' + job.id + '"]')) upsertMine(job);
    updateQueue(job);
  });
  document.addEventListener("ocrdash:connected", function (e) { if (!e.detail.first) location.reload(); });
})();
