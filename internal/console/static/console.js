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

  // Copy buttons copy the field they name.
  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-copy]");
    if (!b) return;
    var f = document.getElementById(b.getAttribute("data-copy"));
    if (!f) return;
    f.select();
    var done = function () { b.textContent = "Copied"; };
    if (navigator.clipboard) navigator.clipboard.writeText(f.value).then(done, function () { document.execCommand("copy"); done(); });
    else { document.execCommand("copy"); done(); }
  });

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

  // Forms that change something are sent once: the submit disables their
  // buttons and shows progress, so a second click cannot send them again
  // (the server also makes one request of a form sent twice).
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if ((f.getAttribute("method") || "").toLowerCase() !== "post") return;
    if (f.getAttribute("data-sent")) {
      e.preventDefault();
      return;
    }
    f.setAttribute("data-sent", "1");
    f.setAttribute("aria-busy", "true");
    var clicked = e.submitter;
    // After this turn, so that the clicked button's value is still sent.
    setTimeout(function () {
      var bs = f.querySelectorAll("button");
      for (var i = 0; i < bs.length; i++) {
        bs[i].disabled = true;
        if (bs[i] === clicked && bs[i].getAttribute("data-busy")) {
          bs[i].textContent = bs[i].getAttribute("data-busy");
        }
      }
    }, 0);
  });
  // Back and forward show pages from the browser's cache as they were
  // left: closed dialogs, forms ready to use again but not filled in.
  window.addEventListener("pageshow", function (e) {
    if (!e.persisted) return;
    var ds = document.querySelectorAll("dialog[open]");
    for (var i = 0; i < ds.length; i++) ds[i].close();
    var fs = document.querySelectorAll("form[data-sent]");
    for (i = 0; i < fs.length; i++) {
      fs[i].removeAttribute("data-sent");
      fs[i].removeAttribute("aria-busy");
      if (fs[i].hasAttribute("data-once")) fs[i].reset();
      var bs = fs[i].querySelectorAll("button");
      for (var j = 0; j < bs.length; j++) bs[j].disabled = false;
    }
  });

  // Typing an address chooses "Another address or range".
  document.addEventListener("input", function (e) {
    var id = e.target.getAttribute && e.target.getAttribute("data-selects");
    if (id && e.target.value.trim() !== "") {
      var r = document.getElementById(id);
      if (r) r.checked = true;
    }
  });

  // The request form offers the times every ticked port allows.
  function fitDurations(form) {
    var sel = form.querySelector("select[name=duration]");
    if (!sel) return;
    var boxes = form.querySelectorAll("input[name=port][data-max]");
    var fit = 0, longest = 0;
    for (var i = 0; i < boxes.length; i++) {
      var m = parseInt(boxes[i].getAttribute("data-max"), 10);
      if (m > longest) longest = m;
      if (boxes[i].checked && (fit === 0 || m < fit)) fit = m;
    }
    if (fit === 0) fit = longest;
    var best = null;
    for (i = 0; i < sel.options.length; i++) {
      var o = sel.options[i];
      o.disabled = parseInt(o.getAttribute("data-seconds"), 10) > fit;
      if (!o.disabled) best = o;
    }
    if (sel.selectedOptions.length === 0 || sel.selectedOptions[0].disabled) {
      if (best) best.selected = true;
    }
  }
  document.addEventListener("change", function (e) {
    if (e.target.name === "port" && e.target.form && e.target.getAttribute("data-max")) fitDurations(e.target.form);
  });

  // Times show in the viewer's time zone; UTC stays on hover.
  var times = document.querySelectorAll("time[data-local]");
  for (var ti = 0; ti < times.length; ti++) {
    var at = new Date(times[ti].getAttribute("datetime"));
    if (isNaN(at.getTime())) continue;
    times[ti].title = times[ti].textContent;
    times[ti].textContent = at.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZoneName: "short" });
  }

  // A result or an error banner takes focus, so that it is read out.
  // (Again once the page has loaded: scrolling to a #fragment and
  // autofocus may take it away meanwhile.)
  function focusBanner() {
    var banner = document.querySelector("[data-focus]");
    if (banner && !banner.closest("dialog") && document.activeElement !== banner &&
        (!document.activeElement || document.activeElement === document.body)) banner.focus();
  }
  focusBanner();
  window.addEventListener("load", function () { setTimeout(focusBanner, 0); });

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
      if (text === "ended") {
        // An ended grant cannot be revoked: its row says so instead.
        var row = els[i].closest("tr");
        if (row && !row.classList.contains("ended")) {
          row.classList.add("ended");
          var f = row.querySelector("[data-revoke-form]");
          if (f) {
            var note = document.createElement("span");
            note.className = "muted";
            note.textContent = "Ended";
            f.replaceWith(note);
          }
        }
      }
    }
  }
  if (document.querySelector("[data-ends]")) {
    tick();
    setInterval(tick, 1000);
  }
})();
