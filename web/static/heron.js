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
