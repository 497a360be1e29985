// CommuCat console: live metric charts. Embedded in the server binary; no dependencies.
// Polls /admin/metrics.json every 2 s and draws the last 60 points of each chart as an SVG
// polyline. Counters (data-rate="true") are shown as a rate per second between two polls.
(function () {
  "use strict";
  var POINTS = 60;
  var charts = Array.prototype.slice.call(document.querySelectorAll(".chart[data-metric]"));
  if (charts.length === 0) { return; }
  var history = {};
  var last = null;

  function format(v) {
    if (Math.abs(v) >= 100 || v === Math.floor(v)) { return String(Math.round(v)); }
    return v.toFixed(2);
  }

  function draw(chart, values) {
    var line = chart.querySelector("polyline");
    var max = Math.max.apply(null, values.concat([1]));
    var step = 300 / (POINTS - 1);
    var offset = POINTS - values.length;
    var pts = values.map(function (v, i) {
      return ((offset + i) * step).toFixed(1) + "," + (88 - (v / max) * 84).toFixed(1);
    });
    line.setAttribute("points", pts.join(" "));
    chart.querySelector(".value").textContent = format(values[values.length - 1]);
  }

  function update(sample) {
    charts.forEach(function (chart) {
      var name = chart.getAttribute("data-metric");
      var rate = chart.getAttribute("data-rate") === "true";
      var now = sample.values[name] || 0;
      var value = now;
      if (rate) {
        if (last === null) { return; }
        var seconds = Math.max((sample.at - last.at) / 1000, 0.001);
        value = Math.max(now - (last.values[name] || 0), 0) / seconds;
      }
      var h = history[name] || (history[name] = []);
      h.push(value);
      if (h.length > POINTS) { h.shift(); }
      draw(chart, h);
    });
    last = sample;
  }

  function poll() {
    fetch("/admin/metrics.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(update)
      .catch(function () { /* the next poll tries again */ });
  }

  poll();
  setInterval(poll, 2000);
})();
