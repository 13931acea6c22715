// iotex-ops dashboard: the charts (Prometheus range queries, /api/charts) and the drills' scorecard plots, with uPlot.
"use strict";
(function () {
  const palette = ["#1e5aa8", "#c62828", "#2e7d32", "#b26a00", "#6a1b9a", "#00838f", "#5d4037", "#ad1457"];

  function draw(el, title, labels, data) {
    el.textContent = "";
    const width = Math.max(300, el.clientWidth - 10);
    const series = [{}].concat(labels.map((l, i) => ({ label: l, stroke: palette[i % palette.length], width: 1.5, spanGaps: false })));
    // one run (or one sample) alone: an hour either side, not uPlot's guess of years
    const x = { range: (u, min, max) => (min === max ? [min - 3600, max + 3600] : [min, max]) };
    return new uPlot({ title: title, width: width, height: 220, series: series, scales: { x: x } }, data, el);
  }

  const charts = document.getElementById("charts");
  if (charts) {
    const status = document.getElementById("charts-status");
    const load = async () => {
      try {
        const resp = await fetch("/api/charts?window=" + encodeURIComponent(charts.dataset.window));
        const doc = await resp.json();
        if (doc.error) { status.textContent = doc.error; status.className = "bad"; return; }
        for (const [key, c] of Object.entries(doc.charts)) {
          const el = document.getElementById("chart-" + key);
          if (el) draw(el, c.title, c.labels, c.data);
        }
        status.textContent = "window " + charts.dataset.window + ", a point every " + doc.step_s + " s; updated " + new Date().toLocaleTimeString();
        status.className = "muted";
      } catch (e) {
        status.textContent = "the charts could not be loaded: " + e; status.className = "bad";
      }
    };
    load();
    setInterval(load, 15000);
  }

  function drillPlots() {
    const el = document.getElementById("drill-plots");
    if (!el || !el.dataset.plots) return;
    const plots = JSON.parse(el.dataset.plots);
    for (const [drill, p] of Object.entries(plots)) {
      const div = document.createElement("div");
      div.className = "chart";
      div.dataset.drill = drill;
      el.appendChild(div);
      draw(div, drill + ": duration (s) and passed (1) per run", ["duration (s)", "passed"], [p.t, p.duration_s, p.passed]);
    }
  }
  drillPlots();
  document.addEventListener("dashboard:update", (ev) => { if (ev.detail === "drills") drillPlots(); });
})();
