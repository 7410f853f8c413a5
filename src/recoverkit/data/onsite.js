/* recoverkit on-site offers: shows the visitor's waiting offer, if any. No dependencies; see docs/onsite.md.
 *
 * <script src="/recoverkit/onsite.js" data-apply-url="/cart/apply-code" defer></script>
 *
 * data-endpoint  where the offer is asked for (default: this script's path without ".js")
 * data-apply-url where a click goes; "?code=<code>" is added when the offer has a code (default: stay, and
 *                only report the click)
 * data-target    the id of an element to put the offer in (default: a banner fixed at the bottom of the page)
 *
 * The page receives a "recoverkit:onsite" event with the offer ({token, html, code, expires_in}) before it is
 * shown; calling preventDefault() on it leaves the showing to the shop.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) { return; }
  var endpoint = script.getAttribute("data-endpoint") ||
    new URL(script.src, location.href).pathname.replace(/\.js$/, "");
  var applyUrl = script.getAttribute("data-apply-url");
  var targetId = script.getAttribute("data-target");

  function report(token, mark) {
    return fetch(endpoint, {
      method: "POST", credentials: "same-origin", keepalive: true,
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({token: token, mark: mark})
    }).catch(function () {});
  }

  function countdown(element, seconds) {
    var end = Date.now() + seconds * 1000;
    function tick() {
      var left = Math.max(0, Math.round((end - Date.now()) / 1000));
      var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
      element.textContent = "Valid for " + (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
      if (left > 0) { setTimeout(tick, 1000); } else { element.textContent = "This offer has expired"; }
    }
    tick();
  }

  function show(offer) {
    var box = targetId ? document.getElementById(targetId) : null;
    var banner = document.createElement("div");
    banner.id = "rk-onsite";
    banner.setAttribute("role", "dialog");
    banner.setAttribute("aria-live", "polite");
    if (!box) {
      banner.style.cssText = "position:fixed;left:0;right:0;bottom:0;z-index:2147483000;padding:12px 16px;" +
        "background:#fffbe6;border-top:2px solid #e0b400;font:15px/1.4 sans-serif;color:#222";
    }
    var content = document.createElement("div");
    content.className = "rk-onsite-content";
    content.innerHTML = offer.html;  // rendered by recoverkit through the shop's autoescaped template
    banner.appendChild(content);
    if (offer.expires_in > 0 && offer.expires_in < 86400) {
      var timer = document.createElement("p");
      timer.className = "rk-onsite-countdown";
      banner.appendChild(timer);
      countdown(timer, offer.expires_in);
    }
    var go = document.createElement("button");
    go.type = "button";
    go.className = "rk-onsite-apply";
    go.textContent = offer.code ? "Apply code " + offer.code : "Back to my cart";
    go.addEventListener("click", function () {
      go.disabled = true;
      report(offer.token, "clicked").then(function () {
        if (applyUrl) {
          location.href = applyUrl + (offer.code ? (applyUrl.indexOf("?") < 0 ? "?" : "&") + "code=" +
            encodeURIComponent(offer.code) : "");
        } else {
          banner.remove();
        }
      });
    });
    var close = document.createElement("button");
    close.type = "button";
    close.className = "rk-onsite-dismiss";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "\u00d7";
    close.addEventListener("click", function () {
      report(offer.token, "dismissed");
      banner.remove();
    });
    banner.appendChild(go);
    banner.appendChild(close);
    (box || document.body).appendChild(banner);
  }

  fetch(endpoint, {credentials: "same-origin", headers: {"Accept": "application/json"}})
    .then(function (response) { return response.ok ? response.json() : {offer: null}; })
    .then(function (data) {
      if (!data || !data.offer) { return; }
      var event = new CustomEvent("recoverkit:onsite", {detail: data.offer, cancelable: true});
      if (document.dispatchEvent(event)) { show(data.offer); }
    })
    .catch(function () {});
})();
