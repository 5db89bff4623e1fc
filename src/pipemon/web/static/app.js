// pipemon dashboard: local times, live regions, lazy details. No library.
"use strict";
(function () {
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var withSeconds = /:\d\d:\d\d/.test(el.textContent);
      el.textContent = d.toLocaleString(undefined, {year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: withSeconds ? "2-digit" : undefined});
    });
  }

  function live(el) {
    var every = parseInt(el.getAttribute("data-live"), 10) || 5000;
    function refresh() {
      // not while hidden, nor while the keyboard is inside the region (a refresh would lose the focus)
      if (document.hidden || el.contains(document.activeElement)) return setTimeout(refresh, every);
      var url = new URL(window.location.href);
      url.searchParams.set("fragment", "live");
      fetch(url, {headers: {"Accept": "text/html"}, credentials: "same-origin"}).then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.text();
      }).then(function (html) {
        el.innerHTML = html;
        localTimes(el);
        el.dispatchEvent(new CustomEvent("pipemon:refreshed", {bubbles: true}));
      }).catch(function () { /* the next round tries again */ }).finally(function () {
        setTimeout(refresh, every);
      });
    }
    setTimeout(refresh, every);
  }

  function lazyDetails(el) {
    el.addEventListener("toggle", function () {
      if (!el.open || el.getAttribute("data-loaded")) return;
      el.setAttribute("data-loaded", "1");
      var box = el.querySelector(".deliveries");
      fetch(el.getAttribute("data-src"), {credentials: "same-origin"}).then(function (r) { return r.text(); })
        .then(function (html) { box.innerHTML = html; localTimes(box); })
        .catch(function () { box.textContent = "could not load the delivery log"; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("[data-live]").forEach(live);
    document.querySelectorAll("details[data-src]").forEach(lazyDetails);
  });
})();
