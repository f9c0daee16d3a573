// The salon's page: reveal a phone on click, and draw the Numbers charts with the
// vendored Chart.js (no CDN: the page must work where nothing outside is reachable).
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.phone");
  if (!button || button.dataset.revealed) return;
  const response = await fetch(`/admin/api/bookings/${encodeURIComponent(button.dataset.booking)}/phone`,
    { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const { phone } = await response.json();
  const link = document.createElement("a");
  link.href = `tel:${phone}`;
  link.textContent = phone;
  link.className = "phone-full";
  button.dataset.revealed = "1";
  button.replaceChildren(link);
});

function drawNumbers() {
  const island = document.getElementById("figures");
  if (!island || typeof Chart === "undefined") return;
  const figures = JSON.parse(island.textContent);
  const labels = figures.map((f) => f.day.slice(5));
  const accent = "#a8566d", ok = "#2f9e6f", violet = "#6b5bd6";
  const common = { responsive: true, maintainAspectRatio: false, animation: false,
    plugins: { legend: { position: "bottom" } } };
  new Chart(document.getElementById("chart-calls"), {
    type: "bar",
    data: { labels, datasets: [
      { label: "Звонки", data: figures.map((f) => f.calls), backgroundColor: "#e8c7d0" },
      { label: "Записи", data: figures.map((f) => f.booked), backgroundColor: ok },
      { label: "Переданы людям", data: figures.map((f) => f.handoffs), backgroundColor: violet },
    ] },
    options: { ...common, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
  new Chart(document.getElementById("chart-latency"), {
    type: "line",
    data: { labels, datasets: [
      { label: "Медиана", data: figures.map((f) => f.latency_median_ms), borderColor: accent,
        backgroundColor: accent, spanGaps: true },
      { label: "p95", data: figures.map((f) => f.latency_p95_ms), borderColor: violet,
        backgroundColor: violet, borderDash: [5, 4], spanGaps: true },
    ] },
    options: { ...common, scales: { y: { beginAtZero: true } } },
  });
  document.body.dataset.chartsDrawn = "1";
}

window.addEventListener("load", drawNumbers);
