// Draws the charts a page declares with uPlot. A chart is an element with
// data-bars='{"labels": ["2026-11-23", …], "values": [12.5, …], "unit": "kWh"}'; the table
// next to it holds the same figures for readers without JavaScript.
(function () {
  "use strict";
  function drawBars(element) {
    var data = JSON.parse(element.getAttribute("data-bars"));
    var xs = data.labels.map(function (_, i) { return i; });
    var width = Math.max(element.clientWidth, 240);
    var options = {
      width: width,
      height: 180,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: [-0.5, data.labels.length - 0.5] } },
      axes: [
        {
          values: function (_, ticks) {
            return ticks.map(function (t) { return data.labels[t] ? data.labels[t].slice(8) : ""; });
          },
          splits: function () { return xs; },
        },
        { label: data.unit, size: 56 },
      ],
      series: [
        {},
        {
          label: data.unit,
          fill: "rgba(232, 118, 12, 0.75)",
          stroke: "#e8760c",
          paths: uPlot.paths.bars({ size: [0.6, 64] }),
          points: { show: false },
        },
      ],
    };
    element.textContent = "";
    new uPlot(options, [xs, data.values], element);
  }
  function drawAll(root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("[data-bars]").forEach(drawBars);
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  // Parts htmx swaps in may carry charts too.
  document.addEventListener("htmx:afterSwap", function (event) { drawAll(event.target); });
})();
