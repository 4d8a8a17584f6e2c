// A system's interactive charts and live figures (no inline scripts: the CSP forbids them).
// - [data-site-series]: the Graph tab's chart (uPlot). The legend reads out the values at
//   the time under the cursor (in the site's time zone); dragging across the chart or
//   moving the range sliders fetches finer data for the chosen window from data-json-url.
// - [data-live-url]: the Live status figures, refreshed every few seconds.
(function () {
  "use strict";

  function lastDayOfMonth(iso) {
    var y = +iso.slice(0, 4), m = +iso.slice(5, 7);
    var d = new Date(Date.UTC(y, m, 0));
    return d.toISOString().slice(0, 10);
  }

  function siteChart(element) {
    var plot = null;
    var data = JSON.parse(element.getAttribute("data-site-series"));
    var sliders = document.getElementById("graph-sliders");
    var windowLabel = document.getElementById("graph-window");
    function label(name) { return element.getAttribute("data-label-" + name); }

    function dateAt(index, end) {
      var day = data.labels[index].slice(0, 10);
      return end && data.granularity === "month" ? lastDayOfMonth(day) : day;
    }

    function draw() {
      var places = data.unit === "W" ? 0 : 2;
      var shown = function (_, v) { return v == null ? "--" : v.toFixed(places); };
      var series = [{}, { label: label("produced") + " (" + data.unit + ")", stroke: "#e8760c", fill: "rgba(232,118,12,0.18)", width: 2 }];
      var columns = [data.x, data.produced];
      if (data.consumed) {
        series.push({ label: label("consumed") + " (" + data.unit + ")", stroke: "#0b5cad", width: 2 });
        columns.push(data.consumed);
        series.push({ label: label("net") + " (" + data.unit + ")", stroke: "#6b7785", width: 1, dash: [4, 4] });
        columns.push(data.net_import);
      }
      if (data.battery) {
        series.push({ label: label("battery") + " (" + data.unit + ")", stroke: "#067647", width: 2 });
        columns.push(data.battery);
      }
      for (var i = 1; i < series.length; i++) series[i].value = shown;
      if (data.granularity === "day" || data.granularity === "month") {
        series[1].paths = uPlot.paths.bars({ size: [0.7, 48] });
      }
      var options = {
        width: Math.max(element.clientWidth - 16, 280),
        height: 300,
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), data.time_zone); },
        cursor: { drag: { x: true, y: false, setScale: false } },
        series: series,
        axes: [{}, { size: 64 }],
        hooks: {
          setSelect: [function (u) {
            if (u.select.width < 4) return;
            var from = u.posToIdx(u.select.left);
            var to = u.posToIdx(u.select.left + u.select.width);
            u.setSelect({ left: 0, width: 0 }, false);
            load(dateAt(from, false), dateAt(Math.max(from, to), true));
          }],
        },
      };
      element.textContent = "";
      if (plot) plot.destroy();
      plot = new uPlot(options, columns, element);
      if (sliders) {
        sliders.querySelectorAll("[data-slider]").forEach(function (s) {
          s.max = String(Math.max(data.x.length - 1, 0));
          s.value = s.getAttribute("data-slider") === "start" ? "0" : s.max;
        });
        showWindow();
      }
    }

    function showWindow() {
      if (!windowLabel || !data.x.length) return;
      var start = +sliders.querySelector("[data-slider=start]").value;
      var end = +sliders.querySelector("[data-slider=end]").value;
      windowLabel.textContent = data.labels[Math.min(start, end)].replace("T", " ") + " → " +
        data.labels[Math.max(start, end)].replace("T", " ");
    }

    function load(from, to) {
      var url = element.getAttribute("data-json-url") + "?from=" + from + "&to=" + to + "&granularity=auto";
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (next) {
          data = next;
          draw();
          var produced = document.getElementById("graph-total-produced");
          if (produced) produced.textContent = data.total_produced;
          var consumed = document.getElementById("graph-total-consumed");
          if (consumed && data.total_consumed) consumed.textContent = data.total_consumed;
          var form = document.getElementById("graph-range");
          if (form) {
            form.elements.from.value = data.from;
            form.elements.to.value = data.to;
            form.elements.granularity.value = "auto";
          }
          history.replaceState(null, "", location.pathname + "?from=" + data.from + "&to=" + data.to);
        })
        .catch(function () { /* the page keeps the previous range */ });
    }

    if (sliders) {
      sliders.addEventListener("input", showWindow);
      sliders.addEventListener("change", function () {
        if (!data.x.length) return;
        var a = +sliders.querySelector("[data-slider=start]").value;
        var b = +sliders.querySelector("[data-slider=end]").value;
        load(dateAt(Math.min(a, b), false), dateAt(Math.max(a, b), true));
      });
    }
    draw();
  }

  function live(element) {
    var url = element.getAttribute("data-live-url");
    var every = +(element.getAttribute("data-live-every") || 5) * 1000;
    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (figures) {
          Object.keys(figures).forEach(function (key) {
            var slot = element.querySelector("[data-live=" + key + "]");
            if (slot) slot.textContent = figures[key];
          });
          element.setAttribute("data-live-updated", String(Date.now()));
        })
        .catch(function () { /* try again at the next tick */ })
        .then(function () { setTimeout(refresh, every); });
    }
    setTimeout(refresh, every);
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-print]")) window.print();
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof uPlot !== "undefined") document.querySelectorAll("[data-site-series]").forEach(siteChart);
    document.querySelectorAll("[data-live-url]").forEach(live);
  });
})();
