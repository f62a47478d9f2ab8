// ajar console: the few things that need JavaScript. Everything here is an
// enhancement; the pages work without it.
(function () {
  "use strict";

  // Dialogs: links with data-dialog open the named <dialog> instead of
  // navigating; elements with data-close inside a dialog close it.
  var opener = null;
  document.addEventListener("click", function (e) {
    var t = e.target.closest("[data-dialog]");
    if (t) {
      var d = document.getElementById(t.getAttribute("data-dialog"));
      if (d && typeof d.showModal === "function") {
        e.preventDefault();
        opener = t;
        // showModal focuses the dialog's autofocus element: its title, so
        // that the Enter that opened it cannot also submit its form.
        d.showModal();
      }
      return;
    }
    t = e.target.closest("[data-close]");
    if (t && t.closest("dialog")) {
      e.preventDefault();
      t.closest("dialog").close();
    }
  });
  document.addEventListener("close", function (e) {
    if (e.target.tagName === "DIALOG" && opener) {
      opener.focus();
      opener = null;
    }
  }, true);

  // Policy editor: Add and Remove edit the rows in place.
  var counter = 1000;
  document.addEventListener("click", function (e) {
    var add = e.target.closest("[data-add-row]");
    if (add) {
      var tpl = document.getElementById("policy-row-template");
      var body = document.getElementById("policy-rows");
      if (!tpl || !body) return;
      e.preventDefault();
      var html = tpl.innerHTML.replace(/__N__/g, String(counter++));
      body.insertAdjacentHTML("beforeend", html);
      var input = body.lastElementChild.querySelector("input");
      if (input) input.focus();
      return;
    }
    var rm = e.target.closest("[data-remove-row]");
    if (rm) {
      var row = rm.closest("tr");
      if (!row) return;
      e.preventDefault();
      var next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      var focus = next ? next.querySelector("input") : document.getElementById("policy-add");
      if (focus) focus.focus();
    }
  });

  // Countdowns: time elements with data-ends tick down to the grant's end.
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function left(ms) {
    if (ms <= 0) return "ended";
    var s = Math.ceil(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    s = s % 60;
    return h > 0 ? h + "h " + pad(m) + "m " + pad(s) + "s" : m + "m " + pad(s) + "s";
  }
  // The server's clock decides; correct for the browser's offset from it.
  var skew = 0;
  var served = document.querySelector("meta[name=server-time]");
  if (served) {
    var t = Date.parse(served.content);
    if (!isNaN(t)) skew = Date.now() - t;
  }
  function tick() {
    var els = document.querySelectorAll("[data-ends]");
    for (var i = 0; i < els.length; i++) {
      var end = Date.parse(els[i].getAttribute("data-ends"));
      if (isNaN(end)) continue;
      var text = left(end - (Date.now() - skew));
      if (els[i].textContent !== text) els[i].textContent = text;
      if (text === "ended") els[i].closest("tr") && els[i].closest("tr").classList.add("ended");
    }
  }
  if (document.querySelector("[data-ends]")) {
    tick();
    setInterval(tick, 1000);
  }
})();
