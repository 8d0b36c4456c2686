/*
 * Parley web chat widget loader. A tenant adds one line to its website:
 *
 *   <script src="https://parley.example.com/widget.js" data-tenant="default" async></script>
 *
 * It draws a chat bubble in the page's corner that opens the chat (served by Parley at /widget)
 * in an iframe, so the site's styles and the chat's never mix. Optional attributes:
 * data-title (the bubble's label) and data-position ("left" or "right").
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__parleyWidget) return;
  window.__parleyWidget = true;

  var origin = new URL(script.src, window.location.href).origin;
  var tenant = script.getAttribute("data-tenant") || "default";
  var title = script.getAttribute("data-title") || "Chat with us";
  var side = script.getAttribute("data-position") === "left" ? "left" : "right";

  function mount() {
    var bubble = document.createElement("button");
    bubble.type = "button";
    bubble.textContent = "\uD83D\uDCAC";
    bubble.setAttribute("aria-label", title);
    bubble.setAttribute("aria-expanded", "false");
    bubble.setAttribute("aria-controls", "parley-chat-frame");
    bubble.style.cssText =
      "position:fixed;bottom:20px;" + side + ":20px;width:56px;height:56px;border-radius:50%;" +
      "border:0;background:#1f4e79;color:#fff;font-size:26px;cursor:pointer;z-index:2147483000;" +
      "box-shadow:0 4px 14px rgba(0,0,0,.25)";

    var frame = document.createElement("iframe");
    frame.id = "parley-chat-frame";
    frame.title = title;
    frame.src = origin + "/widget?tenant=" + encodeURIComponent(tenant);
    frame.hidden = true;
    frame.style.cssText =
      "position:fixed;bottom:88px;" + side + ":20px;width:min(380px,calc(100vw - 40px));" +
      "height:min(560px,calc(100vh - 120px));border:0;border-radius:12px;background:#fff;" +
      "box-shadow:0 8px 30px rgba(0,0,0,.3);z-index:2147483000";

    bubble.addEventListener("click", function () {
      var open = frame.hidden;
      frame.hidden = !open;
      bubble.setAttribute("aria-expanded", open ? "true" : "false");
      bubble.setAttribute("aria-label", open ? "Close chat" : title);
      bubble.textContent = open ? "\u2715" : "\uD83D\uDCAC";
      if (open && frame.contentWindow) frame.contentWindow.postMessage("parley:focus", origin);
    });

    document.body.appendChild(frame);
    document.body.appendChild(bubble);
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
