/*
 * The chat inside Parley's /widget page. It speaks the web channel API:
 *   POST /api/v1/web/messages             a visitor's message (retried with the same id)
 *   GET  /api/v1/conversations/{id}/messages?visitor_id=   the history
 *   GET  /api/v1/conversations/{id}/events?visitor_id=     live replies (server-sent events)
 * The visitor id and conversation id are kept in local storage, so a returning visitor sees their
 * conversation. The live stream reconnects with backoff, and each (re)connection reloads the
 * history, so a reply sent while the connection was down is never missed.
 */
(function () {
  "use strict";
  var tenant = document.body.getAttribute("data-tenant");
  var businessName = document.body.getAttribute("data-business");
  var storageKey = "parley.widget." + tenant;
  var log = document.getElementById("chat-log");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var sendButton = document.getElementById("chat-send");
  var status = document.getElementById("chat-status");

  var saved = load();
  if (!saved.visitorId) {
    saved.visitorId = randomId();
    store();
  }
  var shown = {}; // message id -> element
  var source = null;
  var retryMs = 1000;

  function load() {
    try {
      return JSON.parse(window.localStorage.getItem(storageKey) || "{}") || {};
    } catch (e) {
      return {};
    }
  }

  function store() {
    try {
      window.localStorage.setItem(storageKey, JSON.stringify(saved));
    } catch (e) {
      /* private mode: the chat still works for this page view */
    }
  }

  function randomId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return ("0" + b.toString(16)).slice(-2);
      })
      .join("");
  }

  function setStatus(text) {
    status.textContent = text;
  }

  function timeOf(iso) {
    var date = iso ? new Date(iso) : new Date();
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function render(message) {
    if (!message || !message.id || !message.text) return;
    if (message.status === "queued" || message.status === "blocked") return;
    if (shown[message.id]) return;
    var mine = message.direction === "inbound";
    var item = document.createElement("li");
    item.className = "message " + (mine ? "from-visitor" : "from-business");
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = mine ? "You" : message.author === "staff" ? businessName + " team" : businessName;
    var text = document.createElement("p");
    text.textContent = message.text;
    var when = document.createElement("time");
    when.dateTime = message.created_at || "";
    when.textContent = timeOf(message.created_at);
    item.appendChild(who);
    item.appendChild(text);
    item.appendChild(when);
    shown[message.id] = item;
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  function loadHistory() {
    if (!saved.conversationId) return Promise.resolve();
    var url =
      "/api/v1/conversations/" + encodeURIComponent(saved.conversationId) +
      "/messages?visitor_id=" + encodeURIComponent(saved.visitorId);
    return fetch(url, { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("history " + response.status);
        return response.json();
      })
      .then(function (body) {
        (body.messages || []).forEach(matchPendingThenRender);
      });
  }

  // A visitor's own message is shown at once; when the server's copy arrives it takes its place.
  function matchPendingThenRender(message) {
    if (message.direction === "inbound" && !shown[message.id]) {
      var pendingItems = log.querySelectorAll("li.pending");
      for (var i = 0; i < pendingItems.length; i++) {
        if (pendingItems[i].getAttribute("data-text") === message.text) {
          pendingItems[i].classList.remove("pending");
          pendingItems[i].removeAttribute("data-text");
          shown[message.id] = pendingItems[i];
          return;
        }
      }
    }
    render(message);
  }

  function connect() {
    if (!saved.conversationId || source) return;
    var url =
      "/api/v1/conversations/" + encodeURIComponent(saved.conversationId) +
      "/events?visitor_id=" + encodeURIComponent(saved.visitorId);
    source = new EventSource(url);
    source.addEventListener("open", function () {
      retryMs = 1000;
      setStatus("");
      loadHistory().catch(function () {});
    });
    source.addEventListener("message", function (event) {
      try {
        matchPendingThenRender(JSON.parse(event.data));
      } catch (e) {
        /* an event this page does not understand */
      }
    });
    source.addEventListener("error", function () {
      setStatus("Reconnecting\u2026");
      // EventSource retries by itself after a dropped connection, but gives up for good when the
      // server answers with an error status; then this page reconnects, backing off to 30 s.
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        window.setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      }
    });
  }

  function send(text, clientMessageId, attempt) {
    return fetch("/api/v1/web/messages", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({
        tenant: tenant,
        visitor_id: saved.visitorId,
        text: text,
        client_message_id: clientMessageId,
      }),
    }).then(function (response) {
      if (response.status === 202) return response.json();
      if (response.status >= 500 && attempt < 4) {
        return new Promise(function (resolve) {
          window.setTimeout(resolve, 500 * Math.pow(2, attempt));
        }).then(function () {
          return send(text, clientMessageId, attempt + 1);
        });
      }
      return response.json().then(
        function (body) {
          throw new Error((body && body.error && body.error.message) || "not sent");
        },
        function () {
          throw new Error("not sent");
        }
      );
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    var item = document.createElement("li");
    item.className = "message from-visitor pending";
    item.setAttribute("data-text", text);
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = "You";
    var body = document.createElement("p");
    body.textContent = text;
    item.appendChild(who);
    item.appendChild(body);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    sendButton.disabled = true;
    send(text, randomId(), 0)
      .then(function (accepted) {
        setStatus("");
        if (accepted.conversation_id && accepted.conversation_id !== saved.conversationId) {
          saved.conversationId = accepted.conversation_id;
          store();
        }
        connect();
      })
      .catch(function (error) {
        item.classList.add("failed");
        item.classList.remove("pending");
        setStatus("Your message was not sent: " + error.message);
      })
      .then(function () {
        sendButton.disabled = false;
        input.focus();
      });
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  window.addEventListener("message", function (event) {
    if (event.data === "parley:focus") input.focus();
  });

  if (saved.conversationId) {
    loadHistory()
      .catch(function () {})
      .then(connect);
  }
})();
