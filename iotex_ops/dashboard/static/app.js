// iotex-ops dashboard: live fragments over server-sent events, and the actions (with the session's CSRF token).
// The server renders every fragment (autoescaped); this script only swaps them in.
"use strict";
(function () {
  const flash = document.getElementById("flash");
  const live = document.getElementById("live");

  function say(text, ok) {
    const div = document.createElement("div");
    div.className = "msg " + (ok ? "ok" : "bad");
    div.textContent = text;
    flash.appendChild(div);
    setTimeout(() => div.remove(), 8000);
  }

  const targets = {};
  document.querySelectorAll("[data-topic]").forEach((el) => { if (el.dataset.topic) targets[el.dataset.topic] = el; });
  const topics = Object.keys(targets);
  if (topics.length) {
    const es = new EventSource("/events?topics=" + topics.join(","));
    topics.forEach((t) => es.addEventListener(t, (ev) => {
      const doc = JSON.parse(ev.data);
      targets[t].innerHTML = doc.html;
      document.dispatchEvent(new CustomEvent("dashboard:update", { detail: t }));
    }));
    es.onopen = () => { if (live) live.className = "live on"; };
    es.onerror = () => { if (live) live.className = "live off"; };
  }

  function csrf() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!form.classList || !form.classList.contains("action")) return;
    ev.preventDefault();
    const body = new FormData(form);
    try {
      const resp = await fetch(form.action, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" },
      });
      let doc = {};
      try { doc = await resp.json(); } catch (e) { doc = { message: await resp.text() }; }
      say(doc.message || ("HTTP " + resp.status), resp.ok && doc.ok);
    } catch (e) {
      say("the dashboard did not answer: " + e, false);
    }
  });
})();
