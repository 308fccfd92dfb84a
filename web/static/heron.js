// Heron dashboard: progressive enhancement only. Pages work without this file.
//
// On the ticket queue, announce tickets that arrived after the page was rendered (Server-Sent
// Events from /live/tickets), with a link that reloads the queue.
(function () {
  "use strict";
  var queue = document.querySelector("[data-live-after]");
  if (!queue || !window.EventSource) {
    return;
  }
  var banner = queue;
  var after = queue.getAttribute("data-live-after");
  var source = new EventSource("/live/tickets" + (after ? "?after=" + encodeURIComponent(after) : ""));
  source.addEventListener("tickets", function (event) {
    var count = parseInt(event.data, 10) || 0;
    if (count > 0) {
      banner.querySelector("span").textContent =
        count === 1 ? "1 new ticket" : (count >= 50 ? "50 or more new tickets" : count + " new tickets");
      banner.hidden = false;
    }
  });
})();
