// Verifies a BatchIn evidence pack in the browser; mirrors batchin/core/audit/verify.py.
// Ed25519 comes from the vendored TweetNaCl (window.nacl); JCS, SHA-256 and the RFC 6962 proof
// check are here, so nothing depends on WebCrypto (which plain-http origins do not get).
// A library with no side effects: it only defines window.batchinVerify.verifyPack(pack), which
// returns {valid, checks, errors}; each page that shows a verdict has its own small script.
"use strict";

(function () {
  var ENVELOPE = ["record_id", "run_id", "trace_id", "route_id", "provider", "environment", "prompt_version_id"];

  function hex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  function unhex(text) {
    text = String(text);
    if (!/^([0-9a-f]{2})*$/.test(text)) throw new Error("not lowercase hex: " + text.slice(0, 20));
    var out = new Uint8Array(text.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
    return out;
  }

  function concat(parts) {
    var size = 0, offset = 0;
    parts.forEach(function (p) { size += p.length; });
    var out = new Uint8Array(size);
    parts.forEach(function (p) { out.set(p, offset); offset += p.length; });
    return out;
  }

  // RFC 8785: ES2015 JSON.stringify for primitives (exactly JCS's number and string rules), object
  // members sorted by UTF-16 code units (the default sort of JS strings).
  function jcs(value) {
    if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
    if (typeof value === "number") {
      if (!isFinite(value)) throw new Error("JCS has no encoding for " + value);
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) return "[" + value.map(jcs).join(",") + "]";
    if (typeof value === "object") {
      return "{" + Object.keys(value).sort().map(function (k) {
        return JSON.stringify(k) + ":" + jcs(value[k]);
      }).join(",") + "}";
    }
    throw new Error("JCS has no encoding for " + typeof value);
  }

  function utf8(text) { return new TextEncoder().encode(text); }

  // SHA-256, FIPS 180-4 §6.2.
  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];

  function sha256(message) {
    var length = message.length;
    var padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
    padded.set(message);
    padded[length] = 0x80;
    var bits = length * 8, view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(padded.length - 4, bits >>> 0);
    var h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    var w = new Uint32Array(64);
    for (var block = 0; block < padded.length; block += 64) {
      for (var t = 0; t < 16; t++) w[t] = view.getUint32(block + 4 * t);
      for (t = 16; t < 64; t++) {
        var x = w[t - 15], y = w[t - 2];
        var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) >>> 0;
      }
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
      for (t = 0; t < 64; t++) {
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var t1 = (k + S1 + ((e & f) ^ (~e & g)) + K[t] + w[t]) >>> 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        k = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      h[0] = (h[0] + a) >>> 0; h[1] = (h[1] + b) >>> 0; h[2] = (h[2] + c) >>> 0; h[3] = (h[3] + d) >>> 0;
      h[4] = (h[4] + e) >>> 0; h[5] = (h[5] + f) >>> 0; h[6] = (h[6] + g) >>> 0; h[7] = (h[7] + k) >>> 0;
    }
    var out = new Uint8Array(32), outView = new DataView(out.buffer);
    for (var i = 0; i < 8; i++) outView.setUint32(4 * i, h[i]);
    return out;
  }

  function leafHash(leaf) { return sha256(concat([new Uint8Array([0]), leaf])); }
  function nodeHash(l, r) { return sha256(concat([new Uint8Array([1]), l, r])); }

  // RFC 9162 §2.1.3.2, with arithmetic instead of 32-bit bit operations (sizes up to 2^53).
  function verifyInclusion(leaf, index, size, path, root) {
    if (!(index >= 0 && index < size)) return false;
    var fn = index, sn = size - 1, r = leaf;
    for (var i = 0; i < path.length; i++) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        r = nodeHash(path[i], r);
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = nodeHash(r, path[i]);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && hex(r) === hex(root);
  }

  function stripPrefix(text) { return String(text).replace(/^ed25519:/, ""); }

  function verifyPack(pack) {
    var checks = {}, errors = [];
    function check(name, ok, why) {
      checks[name] = (name in checks ? checks[name] : true) && !!ok;
      if (!ok) errors.push(why);
    }
    try {
      var payload = pack.payload, signed = utf8(jcs(payload));
      var publicKey = unhex(stripPrefix(pack.public_key));
      check("signature", nacl.sign.detached.verify(signed, unhex(stripPrefix(pack.signature)), publicKey),
        "record signature does not verify");
      check("key_id", hex(sha256(publicKey)).slice(0, 16) === pack.key_id && pack.key_id === payload.key_id,
        "key id does not match the public key");
      ENVELOPE.forEach(function (name) {
        check("envelope", pack[name] === payload[name], name + " differs from the signed payload");
      });
      if ("attestation" in payload) {  // records older than the field state none: nothing to check
        var asserted = payload.attestation === "caller_asserted";
        check("attestation", asserted ? typeof payload.asserted_by === "string" && payload.asserted_by !== "" :
          payload.attestation === "served" && !("asserted_by" in payload),
          "attestation is neither 'served' nor 'caller_asserted' with the asserting user");
      }
      check("hashes", /^sha256:[0-9a-f]{64}$/.test(payload.input_hash) && /^sha256:[0-9a-f]{64}$/.test(payload.output_hash),
        "input_hash/output_hash are not sha256:<hex>");
      var proof = pack.inclusion_proof, cp = pack.checkpoint, cpPayload = cp.payload;
      var leaf = leafHash(signed);
      check("leaf_hash", hex(leaf) === proof.leaf_hash, "leaf hash is not SHA-256(0x00 || payload)");
      check("inclusion", proof.tree_size === cpPayload.tree_size &&
        verifyInclusion(leaf, proof.leaf_index, proof.tree_size, proof.audit_path.map(unhex), unhex(cpPayload.root_hash)),
        "inclusion proof does not lead to the checkpoint's root");
      var cpKey = unhex(stripPrefix(cp.public_key));
      check("checkpoint_signature", hex(sha256(cpKey)).slice(0, 16) === cpPayload.key_id &&
        nacl.sign.detached.verify(utf8(jcs(cpPayload)), unhex(stripPrefix(cp.signature)), cpKey),
        "checkpoint signature does not verify");
    } catch (err) {
      check("format", false, "malformed evidence pack: " + err.message);
    }
    var valid = Object.keys(checks).length > 0 && Object.keys(checks).every(function (k) { return checks[k]; });
    return { valid: valid, checks: checks, errors: errors };
  }

  // The one entry point for pages: /verify/{id} (verify-page.js) and the console's receipts page.
  window.batchinVerify = { verifyPack: verifyPack, jcs: jcs, sha256: sha256 };
})();
