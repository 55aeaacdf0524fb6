// Draws the overview's charts with the vendored Chart.js from the JSON the server put in
// #chart-data: configuration only, no drawing code of our own.
(function () {
  var source = document.getElementById("chart-data");
  if (!source || typeof Chart === "undefined") { return; }
  var payload = JSON.parse(source.textContent);
  var colours = { referred_minor: "#1d4ed8", organic_minor: "#047857",
                  unattributed_minor: "#b45309", rewards_minor: "#1d4ed8",
                  clawbacks_minor: "#b91c1c", net_minor: "#374151" };
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var figure = payload[canvas.dataset.chart] || {};
    var chart = figure[canvas.dataset.currency];
    if (!chart) { return; }
    new Chart(canvas, {
      type: "bar",
      data: { labels: chart.labels, datasets: chart.datasets.map(function (d) {
        return { label: d.label, data: d.data, backgroundColor: colours[d.key] };
      }) },
      options: { animation: false, responsive: true,
                 plugins: { legend: { labels: { color: "#1a1a1a" } } },
                 scales: { x: { ticks: { color: "#1a1a1a" } },
                           y: { ticks: { color: "#1a1a1a" },
                                title: { display: true, text: canvas.dataset.currency.toUpperCase(),
                                         color: "#1a1a1a" } } } }
    });
  });
})();
