/* PilotLab web console: the live run page. Swaps in the run's status line and task table from server-sent events
   (/runs/RUN_ID/events), or by polling /runs/RUN_ID/live every 2 s when the browser has no EventSource or the
   stream keeps failing. Reloads once the run has ended, to show its report, and fits the report's frame to its
   content. No dependencies; without JavaScript the page refreshes itself instead (a <noscript> meta refresh). */
(function () {
  "use strict";
  /* The signed report, once the run has ended: as tall as its content, so the page scrolls rather than the frame.
     (Without JavaScript the frame keeps the stylesheet's height and scrolls itself.) */
  var frame = document.getElementById("report-frame");
  if (frame) {
    frame.addEventListener("load", function () {
      try {
        var doc = frame.contentDocument;
        if (doc && doc.documentElement) { frame.style.height = (doc.documentElement.scrollHeight + 24) + "px"; }
      } catch (e) { /* not readable: keep the stylesheet's height */ }
    });
  }

  var live = document.getElementById("live");
  if (!live || live.getAttribute("data-terminal") === "yes") { return; }
  var source = null, timer = null, failures = 0, done = false;

  function finish() {
    if (done) { return; }
    done = true;
    if (source) { source.close(); }
    if (timer) { clearInterval(timer); }
    window.location.reload();
  }

  function apply(doc) {
    live.innerHTML = doc.html;
    live.setAttribute("data-status", doc.status);
    if (doc.terminal) { finish(); }
  }

  function poll() {
    fetch(live.getAttribute("data-poll"), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { finish(); throw new Error("signed out"); }
        return r.json();
      })
      .then(apply)
      .catch(function () { /* the next poll tries again */ });
  }

  function startPolling() {
    if (source) { source.close(); source = null; }
    if (timer) { return; }
    live.setAttribute("data-mode", "poll");
    poll();
    timer = setInterval(poll, 2000);
  }

  function stop() {  /* a form was sent (cancel, sign out): its answer is the next page, not a reload */
    done = true;
    if (source) { source.close(); }
    if (timer) { clearInterval(timer); }
  }
  document.addEventListener("submit", stop, true);
  window.addEventListener("pagehide", stop);

  if (!window.EventSource || live.hasAttribute("data-force-poll")) { startPolling(); return; }
  source = new EventSource(live.getAttribute("data-events"));
  live.setAttribute("data-mode", "sse");
  source.addEventListener("run", function (e) { failures = 0; apply(JSON.parse(e.data)); });
  source.addEventListener("end", function () { source.close(); });
  source.addEventListener("signed-out", finish);
  source.onerror = function () {
    failures += 1;
    if (failures >= 3) { startPolling(); }
  };
}());
