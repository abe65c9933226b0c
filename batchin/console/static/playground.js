// The Playground: each panel calls the public API (/v1/*) with a Bearer key, as the SDK does; the
// console's cookie is never accepted there. The key is this console session's playground key
// (console/playground_pages.py says why): minted once through a CSRF-checked console POST and kept
// in sessionStorage; a 401 (the key was revoked, or replaced from another tab) mints a new one once.
(function () {
  "use strict";
  var STORE = "batchin.playground.key";
  var root;

  function msg(name) { return root.dataset["msg" + name] || name; }

  function mintKey() {
    var body = new URLSearchParams({ csrf_token: root.dataset.csrf });
    return fetch(root.dataset.keyUrl, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(msg("KeyFailed"));
        return response.json();
      })
      .then(function (made) {
        sessionStorage.setItem(STORE, made.key);
        return made.key;
      });
  }

  function key() {
    var held = sessionStorage.getItem(STORE);
    return held ? Promise.resolve(held) : mintKey();
  }

  // fetch() with the key; on 401 once more with a fresh key.
  function callApi(path, init) {
    function send(secret) {
      var headers = Object.assign({}, init.headers || {}, { Authorization: "Bearer " + secret });
      return fetch(path, Object.assign({}, init, { headers: headers, credentials: "omit" }));
    }
    return key().then(send).then(function (response) {
      if (response.status !== 401) return response;
      sessionStorage.removeItem(STORE);
      return mintKey().then(send);
    });
  }

  function jsonCall(path, body) {
    return callApi(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  // The API's error envelope, said readably: what the status means here, then the server's words.
  function explain(response) {
    var reasons = { 401: "Unauthorized", 402: "NoCredit", 403: "Forbidden", 429: "RateLimited" };
    var lead = msg(reasons[response.status] || "Failed");
    var retry = response.headers.get("Retry-After");
    return response.text().then(function (text) {
      var detail = text;
      try { detail = JSON.parse(text).error.message; } catch (e) { /* not the envelope */ }
      var said = lead + " (HTTP " + response.status + ")" + (detail ? ": " + detail : "");
      return retry && response.status === 429 ? said + " [Retry-After: " + retry + " s]" : said;
    });
  }

  function el(id) { return document.getElementById(id); }
  // A form's control by name (form.size, form.input and the like can clash with form properties).
  function field(form, name) { return form.elements.namedItem(name); }
  function value(form, name) { return field(form, name).value; }

  function showError(kind, text) {
    var box = el(kind + "-error");
    box.textContent = text;
    box.hidden = false;
  }

  // The receipt link (the audit record's verify page), the request id and the time taken.
  function showMeta(kind, response, started, extra) {
    var meta = el(kind + "-meta");
    meta.textContent = "";
    var record = response.headers.get("X-VaaS-Record-Id");
    if (record) {
      var link = document.createElement("a");
      link.href = "/verify/" + encodeURIComponent(record);
      link.className = "receipt";
      link.textContent = msg("Receipt") + " " + record;
      meta.appendChild(link);
      meta.appendChild(document.createTextNode(" · "));
    }
    var parts = [];
    var requestId = response.headers.get("X-Request-Id");
    if (requestId) parts.push(msg("RequestId") + " " + requestId);
    parts.push(((performance.now() - started) / 1000).toFixed(2) + " " + msg("Seconds"));
    if (extra) parts.push(extra);
    meta.appendChild(document.createTextNode(parts.join(" · ")));
    meta.hidden = false;
  }

  // Server-sent events from a fetch body: split on blank lines (the API sends \r\n\r\n), hand
  // each `data:` payload to onData; returns when the stream ends.
  function readEvents(response, onData) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (step) {
        buffer += decoder.decode(step.value || new Uint8Array(), { stream: !step.done });
        var events = buffer.split(/\r\n\r\n|\n\n|\r\r/);
        buffer = step.done ? "" : events.pop();
        events.forEach(function (event) {
          var data = event.split(/\r\n|\n|\r/).filter(function (line) { return line.indexOf("data:") === 0; })
            .map(function (line) { return line.slice(5).replace(/^ /, ""); }).join("\n");
          if (data) onData(data);
        });
        return step.done ? undefined : pump();
      });
    }
    return pump();
  }

  var handlers = {
    chat: function (form, started) {
      var output = el("chat-output");
      var messages = [];
      var system = value(form, "system");
      if (system.trim()) messages.push({ role: "system", content: system });
      messages.push({ role: "user", content: value(form, "user") });
      var body = {
        model: value(form, "model"),
        messages: messages,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: parseInt(value(form, "max_tokens"), 10) || undefined,
        temperature: value(form, "temperature") === "" ? undefined : parseFloat(value(form, "temperature")),
      };
      return jsonCall("/v1/chat/completions", body).then(function (response) {
        if (!response.ok) return explain(response).then(function (t) { showError("chat", t); });
        var usage = null;
        output.dataset.state = "streaming";
        return readEvents(response, function (data) {
          if (data === "[DONE]") return;
          var chunk = JSON.parse(data);
          if (chunk.error) { showError("chat", msg("Failed") + ": " + chunk.error.message); return; }
          if (chunk.usage) usage = chunk.usage;
          (chunk.choices || []).forEach(function (choice) {
            if (choice.delta && choice.delta.content) output.textContent += choice.delta.content;
          });
        }).then(function () {
          output.dataset.state = "done";
          var tokens = usage ? usage.prompt_tokens + " / " + usage.completion_tokens + " " + msg("Tokens") : "";
          showMeta("chat", response, started, tokens);
        });
      });
    },
    embedding: function (form, started) {
      return jsonCall("/v1/embeddings", { model: value(form, "model"), input: value(form, "input") })
        .then(function (response) {
          if (!response.ok) return explain(response).then(function (t) { showError("embedding", t); });
          return response.json().then(function (result) {
            var vector = result.data[0].embedding;
            var first = vector.slice(0, 8).map(function (v) { return v.toFixed(4); }).join(", ");
            el("embedding-output").textContent = msg("Dimensions") + ": " + vector.length + "\n" +
              msg("FirstValues") + ": [" + first + (vector.length > 8 ? ", …" : "") + "]";
            showMeta("embedding", response, started);
          });
        });
    },
    speech: function (form, started) {
      var body = { model: value(form, "model"), input: value(form, "input"), response_format: "wav" };
      var voice = value(form, "voice").trim();
      if (voice) body.voice = voice;
      return jsonCall("/v1/audio/speech", body).then(function (response) {
        if (!response.ok) return explain(response).then(function (t) { showError("speech", t); });
        return response.blob().then(function (audio) {
          var player = el("speech-audio");
          if (player.src) URL.revokeObjectURL(player.src);
          player.src = URL.createObjectURL(audio);
          player.hidden = false;
          showMeta("speech", response, started, Math.round(audio.size / 1024) + " KiB");
          player.play().catch(function () { /* autoplay refused: the controls are there */ });
        });
      });
    },
    transcription: function (form, started) {
      var upload = new FormData();
      upload.append("model", value(form, "model"));
      upload.append("file", field(form, "file").files[0]);
      return callApi("/v1/audio/transcriptions", { method: "POST", body: upload }).then(function (response) {
        if (!response.ok) return explain(response).then(function (t) { showError("transcription", t); });
        return response.json().then(function (result) {
          el("transcription-output").textContent = result.text;
          showMeta("transcription", response, started);
        });
      });
    },
    image: function (form, started) {
      var body = { model: value(form, "model"), prompt: value(form, "prompt"), response_format: "b64_json" };
      var size = value(form, "size").trim();
      if (size) body.size = size;
      return jsonCall("/v1/images/generations", body).then(function (response) {
        if (!response.ok) return explain(response).then(function (t) { showError("image", t); });
        return response.json().then(function (result) {
          var img = el("image-output");
          img.src = "data:image/png;base64," + result.data[0].b64_json;
          img.alt = value(form, "prompt");
          img.hidden = false;
          showMeta("image", response, started);
        });
      });
    },
  };

  function submit(event) {
    var form = event.target;
    var kind = form.dataset.kind;
    if (!handlers[kind]) return;
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    var output = el(kind + "-output");
    el(kind + "-error").hidden = true;
    el(kind + "-meta").hidden = true;
    if (output && output.tagName === "DIV") output.textContent = "";
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    var label = button.textContent;
    button.textContent = msg("Working");
    handlers[kind](form, performance.now())
      .catch(function (err) { showError(kind, msg("Network") + ": " + err.message); })
      .then(function () {
        button.disabled = false;
        button.removeAttribute("aria-busy");
        button.textContent = label;
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    root = el("playground");
    if (!root) return;
    root.addEventListener("submit", submit);
  });
})();
