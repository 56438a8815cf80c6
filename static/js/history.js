// History: rows on this page follow their jobs live; new jobs are announced, not pushed in
// (the page keeps its place, as GitHub's lists do).
(function () {
  "use strict";
  const table = document.querySelector("#history tbody");
  const notice = document.getElementById("new-jobs");
  document.addEventListener("ocrdash:job", function (e) {
    const job = e.detail;
    const tr = table.querySelector('tr[data-job-id="' + job.id + '"]');
    if (tr) {
      OcrDash.fill(tr, job);
    } else if (job.state === "queued") {
      const newest = table.querySelector("tr[data-job-id]");
      if (!newest || job.id > +newest.dataset.jobId) notice.hidden = false;
    }
  });
})();
