// The /verify/{id} page: fetches the record's evidence pack, verifies it with verify.js
// (window.batchinVerify) and shows the verdict; a pasted pack is verified the same way.
"use strict";

(function () {
  var verifyPack = window.batchinVerify.verifyPack;

  function text(id, value) { document.getElementById(id).textContent = value; }

  // Who stands behind the texts: the same key signs both kinds, so the page must say which.
  function attestation(payload) {
    if (payload.attestation === "served") return "Served: this server ran the call and hashed its output";
    if (payload.attestation === "caller_asserted") {
      return "Caller-asserted: user " + payload.asserted_by + " supplied these texts; this server did not produce them";
    }
    if (!("attestation" in payload)) return "Not stated (a record made before receipts said who asserted them)";
    return "Unknown: " + String(payload.attestation);
  }

  function show(pack, verdict) {
    var box = document.getElementById("verdict");
    box.dataset.state = verdict.valid ? "valid" : "invalid";
    box.textContent = verdict.valid ? "Valid: signature and log inclusion verified" : "Invalid: " + verdict.errors.join("; ");
    var payload = (pack && pack.payload) || {};
    text("record-id", pack.record_id || "—");
    text("model-id", payload.model_id || "—");
    text("attestation", pack.payload ? attestation(payload) : "—");
    document.getElementById("attestation").dataset.attestation = String(payload.attestation || "");
    text("public-key", pack.public_key ? pack.public_key + " (key id " + pack.key_id + ")" : "—");
    if (pack.inclusion_proof) {
      text("log-position", "leaf " + pack.inclusion_proof.leaf_index + " of " + pack.inclusion_proof.tree_size);
    }
    if (pack.checkpoint && pack.checkpoint.payload) {
      text("checkpoint-root", pack.checkpoint.payload.root_hash + " at " + pack.checkpoint.payload.timestamp);
    }
    var list = document.getElementById("checks");
    list.textContent = "";
    Object.keys(verdict.checks).forEach(function (name) {
      var item = document.createElement("li");
      item.dataset.check = name;
      item.dataset.ok = String(verdict.checks[name]);
      item.textContent = name.replace(/_/g, " ");
      list.appendChild(item);
    });
  }

  function fail(message) {
    var box = document.getElementById("verdict");
    box.dataset.state = "error";
    box.textContent = message;
  }

  function load() {
    var id = decodeURIComponent(location.pathname.split("/").pop() || "");
    var url = new URL("../v1/vaas/" + encodeURIComponent(id) + "/evidence", location.href);
    fetch(url.toString(), { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 404) throw new Error("No audit record " + id + ".");
        if (!response.ok) throw new Error("Could not fetch the evidence pack (HTTP " + response.status + ").");
        return response.json();
      })
      .then(function (pack) { show(pack, verifyPack(pack)); })
      .catch(function (err) { fail(err.message); });
  }

  document.getElementById("pack-verify").addEventListener("click", function () {
    try {
      var pack = JSON.parse(document.getElementById("pack-input").value);
      show(pack, verifyPack(pack));
    } catch (err) {
      fail("Not a JSON evidence pack: " + err.message);
    }
  });

  load();
})();
