// Heron dashboard: progressive enhancement only. Pages work without this file.
//
// Shared: swap in the sections of a page this server rendered. Sections that change are
// marked `data-swap` and have an id; each is replaced by the element with the same id in the
// new page (nothing else of the new page is inserted).
var heron = (function () {
  "use strict";
  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var swapped = 0;
    document.querySelectorAll("[data-swap][id]").forEach(function (old) {
      var fresh = doc.getElementById(old.id);
      if (fresh && fresh.hasAttribute("data-swap")) {
        old.replaceWith(document.importNode(fresh, true));
        swapped += 1;
      }
    });
    return swapped;
  }
  function say(message, isError) {
    var status = document.getElementById("action-status");
    if (!status) {
      return;
    }
    status.classList.toggle("error", !!isError);
    status.textContent = message;
  }
  // The message of an error page ("<h1>Not done</h1><p>why</p>").
  function errorOf(html, status) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var heading = doc.querySelector("main h1");
    var message = doc.querySelector("main h1 + p");
    return (heading ? heading.textContent + ": " : "") +
      (message ? message.textContent : "the server answered " + status);
  }
  return { swap: swap, say: say, errorOf: errorOf };
})();

// Forms marked `data-enhance` (ticket actions, binding, escalating, retrying, reloading)
// post with fetch; the server answers with the page it sends the browser back to, whose
// changed sections are swapped in. Focus goes back to the same control of the new section.
(function () {
  "use strict";
  if (!window.fetch || !window.DOMParser || !window.URLSearchParams) {
    return;
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-enhance")) {
      return;
    }
    event.preventDefault();
    var section = form.closest("[data-swap][id]");
    var sectionId = section ? section.id : null;
    var action = form.getAttribute("action");
    var button = form.querySelector("button[type=submit], button:not([type])");
    var label = button ? button.textContent.trim() : "";
    // Taken before the controls are disabled: FormData skips disabled controls.
    var body = new URLSearchParams(new FormData(form));
    var controls = form.querySelectorAll("input, select, textarea, button");
    controls.forEach(function (c) { c.disabled = true; });
    if (section) {
      section.setAttribute("aria-busy", "true");
    }
    fetch(action, {
      method: "POST",
      body: body,
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      credentials: "same-origin",
      redirect: "follow",
    }).then(function (response) {
      return response.text().then(function (html) {
        if (!response.ok) {
          throw new Error(heron.errorOf(html, response.status));
        }
        heron.swap(html);
        heron.say("Done: " + (label || "saved") + ".", false);
        var again = sectionId && document.getElementById(sectionId);
        var target = again && (again.querySelector("form[action='" + action + "'] button") ||
          again.querySelector("button, a, input"));
        if (target) {
          target.focus();
        }
      });
    }).catch(function (error) {
      heron.say(error.message || "The change could not be sent; try again.", true);
      controls.forEach(function (c) { c.disabled = false; });
    }).then(function () {
      if (section) {
        section.removeAttribute("aria-busy");
      }
    });
  });
})();

// On the first page of the ticket queue, new tickets (announced over Server-Sent Events from
// /live/tickets) are shown without a reload: the queue is fetched again with its filters and
// order, and its sections swapped in. The event's id is the newest ticket, from which the
// next count starts.
(function () {
  "use strict";
  var banner = document.querySelector("[data-live-after]");
  if (!banner || !window.EventSource) {
    return;
  }
  var after = banner.getAttribute("data-live-after");
  var source = null;
  function listen() {
    source = new EventSource("/live/tickets" + (after ? "?after=" + encodeURIComponent(after) : ""));
    source.addEventListener("tickets", function (event) {
      var count = parseInt(event.data, 10) || 0;
      if (count <= 0) {
        return;
      }
      var newest = event.lastEventId;
      var text = count === 1 ? "1 new ticket" : (count >= 50 ? "50 or more new tickets" : count + " new tickets");
      if (!window.fetch || !window.DOMParser || !newest) {
        // Say so, with a link that shows them.
        banner.querySelector("span").textContent = text;
        banner.hidden = false;
        return;
      }
      source.close();
      fetch(window.location.href, { credentials: "same-origin" }).then(function (response) {
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        return response.text();
      }).then(function (html) {
        heron.swap(html);
        heron.say(text + " arrived.", false);
        after = newest;
        banner.setAttribute("data-live-after", after);
      }).catch(function () {
        banner.querySelector("span").textContent = text;
        banner.hidden = false;
      }).then(listen);
    });
  }
  listen();
})();

// On the chat page, stream the agent's answer (its steps as they happen) instead of waiting
// for the whole answer on a full page load. Text is inserted as text, never as HTML.
(function () {
  "use strict";
  var form = document.getElementById("chat-form");
  if (!form || !window.EventSource) {
    return;
  }
  var log = document.getElementById("chat-log");
  var status = document.getElementById("chat-status");
  function line(author, text) {
    var item = document.createElement("li");
    var meta = document.createElement("p");
    meta.className = "meta";
    var who = document.createElement("strong");
    who.textContent = author;
    meta.appendChild(who);
    var body = document.createElement("p");
    body.className = "text";
    body.textContent = text;
    item.appendChild(meta);
    item.appendChild(body);
    log.appendChild(item);
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var question = form.elements.question.value.trim();
    if (!question) {
      return;
    }
    var button = form.querySelector("button");
    button.disabled = true;
    line("you", question);
    status.textContent = "The agent is working…";
    var url = form.getAttribute("data-stream") + "?question=" + encodeURIComponent(question) +
      "&csrf=" + encodeURIComponent(form.elements.csrf.value);
    var source = new EventSource(url);
    var finish = function (message) {
      source.close();
      status.textContent = message;
      button.disabled = false;
      form.elements.question.value = "";
    };
    source.addEventListener("step", function (e) {
      var step = JSON.parse(e.data);
      status.textContent = "Step " + step.index + (step.tool ? ": " + step.tool : ": thinking");
    });
    source.addEventListener("answer", function (e) {
      var answer = JSON.parse(e.data);
      line(answer.author, answer.text);
    });
    source.addEventListener("done", function (e) {
      var done = JSON.parse(e.data);
      finish(done.status === "completed" ? "" : "The run ended: " + done.status + (done.error ? " (" + done.error + ")" : ""));
    });
    source.addEventListener("error", function (e) {
      if (e.data) {
        finish(JSON.parse(e.data).message);
      } else if (source.readyState === EventSource.CLOSED) {
        finish("The connection was lost.");
      }
    });
  });
})();
