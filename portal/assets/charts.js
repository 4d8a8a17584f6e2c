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
  // A line chart: data-line='{"labels": ["06:05", …], "values": [212.4, …], "unit": "W"}'
  // (a device's power over a day); the page states the day's totals beside it.
  function drawLine(element) {
    var data = JSON.parse(element.getAttribute("data-line"));
    var xs = data.labels.map(function (_, i) { return i; });
    var width = Math.max(element.clientWidth, 240);
    var step = Math.max(1, Math.ceil(data.labels.length / 12));
    var options = {
      width: width,
      height: 200,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: [0, Math.max(data.labels.length - 1, 1)] } },
      axes: [
        {
          values: function (_, ticks) {
            return ticks.map(function (t) { return data.labels[t] || ""; });
          },
          splits: function () { return xs.filter(function (i) { return i % step === 0; }); },
        },
        { label: data.unit, size: 56 },
      ],
      series: [
        {},
        {
          label: data.unit,
          fill: "rgba(232, 118, 12, 0.2)",
          stroke: "#e8760c",
          width: 2,
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
    root.querySelectorAll("[data-line]").forEach(drawLine);
  }
  // A play button steps through the links marked data-playback-day (the array view's past
  // seven days), one every 1.5 s, through htmx so only the box changes.
  function play(button) {
    var box = button.getAttribute("data-playback");
    var links = Array.prototype.slice.call(document.querySelectorAll(box + " [data-playback-day]"))
      .map(function (a) { return a.getAttribute("href"); });
    var step = 0;
    function next() {
      if (step >= links.length || typeof htmx === "undefined") return;
      htmx.ajax("GET", links[step], { target: box, select: box, swap: "outerHTML" });
      step += 1;
      setTimeout(next, 1500);
    }
    next();
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-playback]");
    if (button) play(button);
  });
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  // Parts htmx swaps in may carry charts too.
  document.addEventListener("htmx:afterSwap", function (event) { drawAll(event.target); });
})();
