// The docs pages' progressive enhancements: a search box over the site's page list (titles,
// descriptions and headings from search.json, fetched on first use) and a copy button on each
// code block. Without JavaScript the pages read the same, with neither.
(function () {
  "use strict";
  var body = document.body;
  var say = function (key) { return body.getAttribute("data-" + key) || ""; };

  function addCopyButtons() {
    var blocks = document.querySelectorAll("div.code");
    Array.prototype.forEach.call(blocks, function (block) {
      var code = block.querySelector("code");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = say("copy");
      button.setAttribute("aria-label", say("copy-label"));
      button.addEventListener("click", function () {
        copyText(code.textContent).then(function () {
          button.textContent = say("copied");
        }, function () {
          button.textContent = say("copy-failed");
        }).then(function () {
          setTimeout(function () { button.textContent = say("copy"); }, 2000);
        });
      });
      block.insertBefore(button, block.firstChild);
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http on another host than localhost has no clipboard API: the old way still works.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      body.appendChild(area);
      area.select();
      var done = document.execCommand("copy");
      body.removeChild(area);
      if (done) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  var index = null;
  function loadIndex() {
    if (!index) {
      index = fetch(body.getAttribute("data-search-url"), { headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); });
    }
    return index;
  }

  // Every word of the query must appear in the page's title, description or one heading; a match
  // in a heading links to that heading, and titles rank first.
  function search(pages, query) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    var found = [];
    if (!words.length) { return found; }
    var all = function (text) {
      var lower = text.toLowerCase();
      return words.every(function (w) { return lower.indexOf(w) !== -1; });
    };
    pages.forEach(function (page) {
      if (all(page.title + " " + page.description)) {
        found.push({ rank: all(page.title) ? 0 : 1, href: page.href, title: page.title, note: page.description });
      }
      page.headings.forEach(function (heading) {
        if (all(heading[0])) {
          found.push({ rank: 2, href: page.href + "#" + heading[1], title: heading[0], note: page.title });
        }
      });
    });
    found.sort(function (a, b) { return a.rank - b.rank; });
    return found.slice(0, 20);
  }

  function setUpSearch() {
    var form = document.querySelector("form.search");
    if (!form || !window.fetch) { return; }
    var input = form.querySelector("input");
    var list = document.getElementById("search-results");
    var status = document.getElementById("search-status");
    form.hidden = false;
    var show = function () {
      loadIndex().then(function (data) {
        var hits = search(data.pages, input.value);
        list.textContent = "";
        hits.forEach(function (hit) {
          var item = document.createElement("li");
          var link = document.createElement("a");
          link.href = hit.href;
          link.textContent = hit.title;
          var note = document.createElement("small");
          note.textContent = hit.note;
          link.appendChild(note);
          item.appendChild(link);
          list.appendChild(item);
        });
        list.hidden = !input.value.trim();
        status.textContent = input.value.trim()
          ? (hits.length ? say("results").replace("{n}", hits.length) : say("no-results")) : "";
        if (input.value.trim() && !hits.length) {
          var none = document.createElement("li");
          none.textContent = say("no-results");
          list.appendChild(none);
        }
      });
    };
    input.addEventListener("focus", loadIndex);
    input.addEventListener("input", show);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var first = list.querySelector("a");
      if (first) { window.location.href = first.href; }
    });
    form.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { list.hidden = true; input.focus(); }
      if (event.key === "ArrowDown") {
        var links = Array.prototype.slice.call(list.querySelectorAll("a"));
        var at = links.indexOf(document.activeElement);
        if (links.length) { links[Math.min(at + 1, links.length - 1)].focus(); event.preventDefault(); }
      }
      if (event.key === "ArrowUp") {
        var items = Array.prototype.slice.call(list.querySelectorAll("a"));
        var pos = items.indexOf(document.activeElement);
        if (pos > 0) { items[pos - 1].focus(); } else { input.focus(); }
        event.preventDefault();
      }
    });
  }

  addCopyButtons();
  setUpSearch();
})();
