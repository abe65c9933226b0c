// The receipt page: fetch the record's evidence pack from the console (the user's own record only)
// and verify it here, in the browser, with the /verify page's own verifier
// (/verify/assets/verify.js, window.batchinVerify). The labels come translated from the page.
(function () {
  "use strict";
  var box = document.getElementById("verification");
  if (!box || !window.batchinVerify) return;
  var verdict = document.getElementById("verdict");
  var list = document.getElementById("checks");

  function mark(name, ok) {
    var item = list.querySelector('li[data-check="' + name + '"]');
    if (!item) {  // a check the page did not list (a malformed pack's "format")
      item = document.createElement("li");
      item.dataset.check = name;
      item.textContent = name.replace(/_/g, " ");
      list.appendChild(item);
    }
    item.dataset.ok = String(ok);
  }

  fetch(box.dataset.evidence, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) throw new Error(box.dataset.fetchFailed + " (HTTP " + response.status + ")");
      return response.json();
    })
    .then(function (pack) {
      var result = window.batchinVerify.verifyPack(pack);
      Object.keys(result.checks).forEach(function (name) { mark(name, result.checks[name]); });
      verdict.dataset.state = result.valid ? "valid" : "invalid";
      verdict.textContent = result.valid ? box.dataset.valid : box.dataset.invalid + " " + result.errors.join("; ");
    })
    .catch(function (err) {
      verdict.dataset.state = "error";
      verdict.textContent = err.message;
    });
})();
