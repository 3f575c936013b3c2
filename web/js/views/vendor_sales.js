// The vendor's sales analytics (GET /api/v1/vendor/analytics, docs/analytics.md) over a range
// the vendor picks (from, to, days or ISO weeks; the server refuses a bad one with a typed
// error, shown on the form): revenue per period as SVG bars, the hour x weekday heatmap, the
// funnel, top listings, the repeat-customer rate, and a CSV export of the same range.
import { bars, heatmap } from "../charts.js";
import { field, form, h, money, mount } from "../dom.js";

const day = (d) => d.toISOString().slice(0, 10);

export function sales(app) {
  const id = "sales-title";
  const heading = h("h3", { id }, "Sales");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const to = new Date();
  const from = new Date(to.getTime() - 29 * 86400000);
  let range = { from: day(from), to: day(to), granularity: "day" };
  const picker = form({ class: "inline range", "aria-label": "Sales range" }, [
    field("From", h("input", { name: "from", type: "date", value: range.from, required: true })),
    field("To", h("input", { name: "to", type: "date", value: range.to, required: true })),
    field("Periods", h("select", { name: "granularity" }, h("option", { value: "day" }, "days"), h("option", { value: "week" }, "weeks"))),
    h("button", { type: "submit" }, "Show"),
  ], async (v) => {
    const next = { from: v.from, to: v.to, granularity: v.granularity };
    draw(await fetchRange(app, next)); // a refused range throws: the form shows it
    range = next;
  });
  const draw = (a) => {
    heading.textContent = `Sales ${a.from} to ${a.to} (UTC)`;
    mount(body, ...figures(a), h("p", {}, h("a", { href: "#", onclick: (e) => (e.preventDefault(), exportCsv(app, range)) }, "Download the orders (CSV)")));
  };
  fetchRange(app, range).then(draw, (exc) => mount(body, h("p", { class: "error" }, exc.message)));
  return h("section", { class: "card", "aria-labelledby": id }, heading, picker, body);
}

function fetchRange(app, { from, to, granularity }) {
  const q = new URLSearchParams({ from, to, granularity });
  return app.rest.get(`/api/v1/vendor/analytics?${q}`);
}

function figures(a) {
  const currency = a.series.find((p) => p.currency)?.currency || null;
  const points = a.series.filter((p) => p.currency === currency);
  const total = points.reduce((n, p) => n + p.revenue, 0);
  const label = currency ? `Revenue per ${a.granularity}: ${money(total, currency)} in all` : "No sales in this range";
  return [
    bars(points.map((p) => ({ key: p.period, value: p.revenue, title: `${p.period}: ${currency ? money(p.revenue, currency) : 0} · ${p.orders} orders` })), label),
    h("p", {}, label),
    h("h4", {}, "When orders come in"),
    heatmap(a.hour_weekday),
    h("p", { class: "muted" }, `funnel: ${a.funnel.views} views → ${a.funnel.carts} carts → ${a.funnel.orders} orders · repeat customers ${Math.round(a.repeat_customer_rate * 100)} %`),
    a.top_listings.length
      ? h("ol", { "aria-label": "Top listings" }, a.top_listings.map((t) => h("li", {}, `${t.title}: ${money(t.revenue, t.currency)} (${t.units} sold)`)))
      : null,
  ];
}

async function exportCsv(app, { from, to }) {
  try {
    const tok = app.rest.tokens.get()?.access_token;
    const q = new URLSearchParams({ format: "csv", from, to });
    const resp = await fetch(`/api/v1/vendor/analytics/export?${q}`, { headers: { Authorization: `Bearer ${tok}` } });
    if (!resp.ok) throw new Error(`export failed (${resp.status})`);
    const url = URL.createObjectURL(await resp.blob());
    h("a", { href: url, download: `orders-${from}-${to}.csv` }).click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (exc) {
    app.toast(exc.message);
  }
}
