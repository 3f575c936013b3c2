// The admin's money (docs/payments.md; role admin, every call audited by the control actor):
// revenue from the ledger over a range, grouped by day, cell or vendor, as SVG bars of the GMV
// and a table per key and currency with totals; and payouts: run a batch now, list them by
// status, mark a manual one paid with the bank's reference.
import { bars } from "../charts.js";
import { field, form, h, money, mount, time } from "../dom.js";

const day = (d) => d.toISOString().slice(0, 10);
const GROUPS = { day: "day", cell: "cell", vendor: "vendor" };

/** The revenue section's body: the range form, then the chart and table it asks for. */
export async function revenue(app) {
  const out = h("div");
  const to = new Date();
  const picker = form({ class: "inline range", "aria-label": "Revenue range" }, [
    field("From", h("input", { name: "from", type: "date", value: day(new Date(to.getTime() - 29 * 86400000)), required: true })),
    field("To", h("input", { name: "to", type: "date", value: day(to), required: true })),
    field("Group by", h("select", { name: "group" }, Object.entries(GROUPS).map(([v, t]) => h("option", { value: v }, t)))),
    h("button", { type: "submit" }, "Show revenue"),
  ], async (v) => mount(out, report(await fetchRevenue(app, v))));
  mount(out, report(await fetchRevenue(app, Object.fromEntries(new FormData(picker).entries()))));
  return h("div", {}, picker, out);
}

function fetchRevenue(app, { from, to, group }) {
  return app.rest.get(`/api/v1/admin/revenue?${new URLSearchParams({ from, to, group })}`);
}

function report(r) {
  if (!r.totals.length) return h("p", { class: "muted" }, `No revenue from ${r.from} to ${r.to}.`);
  const currency = r.totals[0].currency;
  const shown = r.rows.filter((x) => x.currency === currency);
  const total = r.totals[0];
  const label = `GMV by ${r.group}, ${r.from} to ${r.to}: ${money(total.gmv, currency)} from ${total.orders} orders, commission ${money(total.commission, currency)}`;
  const cells = (x) => [money(x.gmv, x.currency), String(x.orders), money(x.refunds, x.currency), money(x.commission, x.currency)].map((t) => h("td", {}, t));
  return h("div", {},
    bars(shown.map((x) => ({ key: x.key, value: x.gmv, title: `${x.key}: ${money(x.gmv, currency)} · ${x.orders} orders` })), label),
    h("p", {}, label),
    h("table", { "aria-label": `Revenue by ${r.group}` },
      h("thead", {}, h("tr", {}, [r.group[0].toUpperCase() + r.group.slice(1), "Currency", "GMV", "Orders", "Refunds", "Commission"].map((t) => h("th", {}, t)))),
      h("tbody", {}, r.rows.map((x) => h("tr", { dataset: { key: x.key } }, h("td", {}, x.key), h("td", {}, x.currency.toUpperCase()), cells(x)))),
      h("tfoot", {}, r.totals.map((x) => h("tr", {}, h("th", {}, "Total"), h("td", {}, x.currency.toUpperCase()), cells(x))))));
}

/** The payouts section's body: run a batch, the payouts of a status, mark manual ones paid. */
export async function payouts(app) {
  const list = h("div");
  const status = h("select", { name: "status" }, ["pending", "paid", "failed"].map((s) => h("option", { value: s }, s)));
  const show = async () => mount(list, await payoutList(app, status.value, show));
  status.addEventListener("change", () => show().catch((exc) => app.toast(exc.message)));
  const result = h("p", { role: "status" });
  const run = h("button", { type: "button", class: "primary", onclick: async () => {
    run.disabled = true;
    try {
      const r = await app.rest.post("/api/v1/admin/payouts/run", {});
      result.textContent = `Batch done: ${r.released} orders released, ${r.payouts.length} payouts made, ${r.transfers.length} transfers sent`;
      await show();
    } catch (exc) {
      app.toast(exc.message);
    } finally {
      run.disabled = false;
    }
  } }, "Run payouts now");
  await show();
  return h("div", {}, h("div", { class: "row" }, run, field("Payouts with status", status)), result, list);
}

async function payoutList(app, status, reload) {
  const page = await app.rest.get(`/api/v1/admin/payouts?status=${status}`);
  if (!page.items.length) return h("p", { class: "muted" }, `No ${status} payouts.`);
  return h("ol", { "aria-label": `Payouts ${status}` }, page.items.map((p) => {
    const li = h("article", { class: "card", dataset: { id: p.id }, "aria-label": `Payout of ${money(p.amount, p.currency)} to vendor ${p.vendor_id}` },
      h("p", {}, h("strong", {}, money(p.amount, p.currency)), ` to vendor ${p.vendor_id} · ${p.method} · ${p.orders.length} orders · `, time(p.created_at)),
      p.reference ? h("p", { class: "muted" }, `reference ${p.reference}`) : null,
      p.error ? h("p", { class: "error" }, p.error) : null);
    if (p.method === "manual" && p.status === "pending") {
      li.append(form({ class: "inline", "aria-label": "Mark paid" }, [
        field("Bank reference", h("input", { name: "reference", required: true, maxlength: 200 })),
        h("button", { type: "submit" }, "Mark paid"),
      ], async (v) => {
        await app.rest.post(`/api/v1/admin/payouts/${p.id}/paid`, { reference: v.reference });
        app.toast("Payout marked paid");
        await reload();
      }));
    }
    return h("li", {}, li);
  }));
}
