// The console's own script: everything works without it; with it, copy buttons, a confirmation
// before revoking, and live batch progress over server-sent events.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) return;
    var source = document.getElementById(button.dataset.copy);
    if (source && navigator.clipboard) navigator.clipboard.writeText(source.textContent.trim());
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList.contains("confirm") && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });
  function watch(row) {
    var source = new EventSource(row.dataset.events);
    source.addEventListener("progress", function (event) {
      var p = JSON.parse(event.data);
      row.querySelector(".batch-status").textContent = p.status;
      var bar = row.querySelector("progress");
      bar.max = Math.max(p.total, 1);
      bar.value = p.completed + p.failed;
      row.querySelector(".batch-counts").textContent =
        p.completed + " \u2713 \u00b7 " + p.failed + " \u2717 / " + p.total;
      if (["completed", "failed", "cancelled", "expired"].indexOf(p.status) >= 0) source.close();
    });
    source.onerror = function () { source.close(); };
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("tr[data-events]").forEach(watch);
  });
})();
