// The console's only script. Pages work without it; it adds:
// - live parts: an element with data-live="NAME" is refreshed every data-interval ms
//   (default 3000) from the same URL with ?fragment=NAME, while the tab is visible;
// - data-confirm on a form asks before it is submitted.
"use strict";
(function () {
  function fragmentUrl(name) {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", name);
    return url.toString();
  }

  function refresh(el) {
    if (document.hidden || el.dataset.busy) return;
    el.dataset.busy = "1";
    fetch(fragmentUrl(el.dataset.live), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null && html !== el.dataset.last) {
          el.dataset.last = html;
          var keep = el.scrollTop;
          el.innerHTML = html;
          el.scrollTop = keep;
          el.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
        }
      })
      .catch(function () {})
      .finally(function () { delete el.dataset.busy; });
  }

  function startLive() {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var every = parseInt(el.dataset.interval || "3000", 10);
      window.setInterval(function () { refresh(el); }, every);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startLive);
  else startLive();
})();
