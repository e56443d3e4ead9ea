/* Draws every <figure data-chart> (portal/web/charts.py) with the vendored Chart.js.
   The figure carries its data as JSON (json_script) and as a table; this script only reads.
   Values show on hover (Chart.js' tooltip, and the readout line under the chart, which a
   screen reader announces), and from the keyboard: focus the chart, then arrow keys,
   Home / End, and Enter to follow the point's link (e.g. its traces in Langfuse). */
(function () {
  "use strict";

  function tiny(v, below) {
    return v !== 0 && Math.abs(v) < below;
  }

  function fmt(v, unit) {
    if (v === null || v === undefined || isNaN(v)) return "—";
    if (unit === "$" && tiny(v, 0.0001)) return "$" + v.toLocaleString("en-US", {maximumSignificantDigits: 2});
    if (unit === "$") return "$" + v.toLocaleString("en-US", {minimumFractionDigits: Math.abs(v) < 1 ? 4 : 2, maximumFractionDigits: Math.abs(v) < 1 ? 4 : 2});
    if (unit === "%") return v.toLocaleString("en-US", {minimumFractionDigits: 1, maximumFractionDigits: 1}) + "%";
    var digits = Number.isInteger(v) || unit === " ms" ? 0 : 2;
    return v.toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits}) + unit;
  }

  function tick(v, unit) {
    // Ticks of sub-cent costs keep two significant digits ($0.00005, not $0.00 on every tick).
    if (unit === "$" && tiny(v, 0.01)) return "$" + v.toLocaleString("en-US", {maximumSignificantDigits: 2});
    if (unit === "$") return "$" + v.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 4});
    return v.toLocaleString("en-US", {maximumFractionDigits: 2}) + (unit === "%" ? "%" : unit);
  }

  // An ISO day on the axis as "11-30" (the year shows in the tooltip, the readout and the table).
  function shortLabel(label) {
    return typeof label === "string" && /^\d{4}-\d{2}-\d{2}$/.test(label) ? label.slice(5) : label;
  }

  function safeLink(url) { return typeof url === "string" && /^https?:\/\//i.test(url) ? url : ""; }

  function readout(spec, index) {
    var parts = spec.datasets.map(function (d) {
      return (spec.datasets.length > 1 || spec.kind === "line" ? d.label + " " : "") + fmt(d.data[index], spec.unit);
    });
    return spec.labels[index] + ": " + parts.join(", ") + (safeLink(spec.links[index]) ? " (Enter or click opens its details)" : "");
  }

  function draw(figure) {
    var script = figure.querySelector('script[type="application/json"]');
    var box = figure.querySelector(".chart-canvas");
    if (!script || !box || figure.chart) return;
    var spec = JSON.parse(script.textContent);
    var canvas = box.querySelector("canvas");
    var out = figure.querySelector(".chart-readout");
    var current = -1;
    box.style.height = (parseInt(figure.getAttribute("data-height"), 10) || 180) + "px";
    box.hidden = false;

    function show(index) {
      if (index < 0 || index >= spec.labels.length) return;
      current = index;
      if (out) out.textContent = readout(spec, index);
    }

    var many = spec.labels.length > 45;
    var chart = new window.Chart(canvas, {
      type: spec.kind,
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map(function (d) {
          return {label: d.label, data: d.data, backgroundColor: d.color, borderColor: d.color,
                  borderWidth: spec.kind === "line" ? 2 : 0, borderRadius: 2, tension: 0,
                  pointRadius: many ? 0 : 2, pointHoverRadius: 4, spanGaps: false};
        })
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: {mode: "index", intersect: false},
        plugins: {
          legend: {display: spec.datasets.length > 1, position: "bottom", labels: {boxWidth: 12}},
          tooltip: {callbacks: {label: function (ctx) {
            return (spec.datasets.length > 1 || spec.kind === "line" ? ctx.dataset.label + ": " : "") + fmt(ctx.parsed.y, spec.unit);
          }}}
        },
        scales: {
          y: {beginAtZero: true, ticks: {callback: function (v) { return tick(v, spec.unit); }, maxTicksLimit: 5}},
          x: {grid: {display: false}, ticks: {maxRotation: 0, autoSkip: true, autoSkipPadding: 12, maxTicksLimit: 7,
                                              callback: function (v) { return shortLabel(this.getLabelForValue(v)); }}}
        },
        onHover: function (event, elements) {
          if (elements.length) show(elements[0].index);
          canvas.style.cursor = elements.length && safeLink(spec.links[elements[0].index]) ? "pointer" : "default";
        },
        onClick: function (event, elements) {
          var url = elements.length ? safeLink(spec.links[elements[0].index]) : "";
          if (url) window.location.href = url;
        }
      }
    });
    figure.chart = chart;

    function activate(index) {
      show(index);
      var active = spec.datasets.map(function (d, i) { return {datasetIndex: i, index: index}; });
      chart.setActiveElements(active);
      chart.tooltip.setActiveElements(active, {x: 0, y: 0});
      chart.update("none");
    }

    canvas.addEventListener("keydown", function (event) {
      var last = spec.labels.length - 1;
      var back = event.key === "ArrowLeft" || event.key === "ArrowUp";
      var next = {ArrowRight: current + 1, ArrowDown: current + 1, ArrowLeft: current - 1, ArrowUp: current - 1,
                  Home: 0, End: last}[event.key];
      if (next !== undefined) {
        event.preventDefault();
        if (current < 0 && event.key.indexOf("Arrow") === 0) next = back ? last : 0;
        activate(Math.max(0, Math.min(last, next)));
      } else if (event.key === "Enter" && current >= 0 && safeLink(spec.links[current])) {
        window.location.href = safeLink(spec.links[current]);
      }
    });
    canvas.addEventListener("blur", function () {
      chart.setActiveElements([]);
      chart.tooltip.setActiveElements([], {x: 0, y: 0});
      chart.update("none");
    });
    figure.setAttribute("data-drawn", "");
  }

  function drawAll() {
    if (!window.Chart) return;
    document.querySelectorAll("figure[data-chart]").forEach(draw);
  }

  window.portalCharts = {drawAll: drawAll, format: fmt};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
