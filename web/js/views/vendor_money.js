// The vendor's money (docs/payments.md): the ledger's balance (available to pay out, pending
// until fulfilment and the hold period, held by disputes, in transit in payouts made; one row
// per currency), what stops its payouts (the open holds: a dispute's or an admin's, of one order
// or of all; a suspension) and the payouts, newest first, paged (GET /api/v1/vendor/balance,
// /payouts).
import { h, money, mount, time } from "../dom.js";

export function balance(app) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const el = h("section", { class: "card", "aria-labelledby": "bal-title" },
    h("div", { class: "row" }, h("h3", { id: "bal-title" }, "Balance"),
      h("button", { type: "button", class: "link", "aria-label": "Reload the balance", onclick: () => load() }, "Reload")),
    body);
  const load = () => app.rest.get("/api/v1/vendor/balance").then((b) => {
    const rows = b.balances.length ? b.balances : [b];
    mount(body, h("table", { "aria-label": "Your balance" },
      h("thead", {}, h("tr", {}, ["Currency", "Available", "Pending", "Held", "In transit"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.map((r) => h("tr", {},
        h("td", {}, r.currency.toUpperCase()),
        ...["available", "pending", "held", "in_transit"].map((k) => h("td", {}, money(r[k], r.currency))))))),
    h("p", { class: "muted" }, "Pending money becomes available once an order is fulfilled and the hold period has passed; payouts take what is available."),
    holds(b));
  }, (exc) => mount(body, h("p", { class: "error" }, exc.message)));
  load();
  return el;
}

/** The open holds of the balance answer, each with its reason; a suspension above them. */
function holds(b) {
  const what = (x) => x.order_id ? `Order ${x.order_id.slice(-6)}` : "All your payouts";
  const items = b.holds.map((x) => h("li", { dataset: { id: x.id } },
    h("strong", {}, what(x)), x.dispute_id ? " · a buyer's dispute" : "", `: ${x.reason} · since `, time(x.created_at)));
  return h("div", { class: "holds" },
    b.payouts_suspended ? h("p", { class: "error" }, "Your shop is suspended: no payouts are made until it is lifted.") : null,
    items.length ? [h("h4", { id: "holds-title" }, "Held payouts"), h("ul", { "aria-labelledby": "holds-title" }, items)]
      : h("p", { class: "muted" }, "Nothing holds your payouts."));
}

const METHOD = { stripe_transfer: "Stripe transfer", manual: "bank (manual)" };

export function payouts(app) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const rows = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Older payouts");
  let cursor = null;
  const row = (p) => h("tr", { dataset: { id: p.id } },
    h("td", {}, time(p.created_at)),
    h("td", {}, money(p.amount, p.currency)),
    h("td", {}, METHOD[p.method] || p.method),
    h("td", {}, h("span", { class: "status-pill", dataset: { status: p.status } }, p.status)),
    h("td", {}, p.reference || p.error || ""),
    h("td", {}, String(p.orders.length)));
  const page = async () => {
    const q = new URLSearchParams({ limit: "20", ...(cursor ? { cursor } : {}) });
    const r = await app.rest.get(`/api/v1/vendor/payouts?${q}`);
    rows.append(...r.items.map(row));
    cursor = r.next_cursor;
    more.hidden = !cursor;
    return r;
  };
  more.addEventListener("click", () => page().catch((exc) => app.toast(exc.message)));
  page().then((r) => {
    if (!r.items.length) return mount(body, h("p", { class: "muted" }, "No payouts yet."));
    mount(body, h("table", { "aria-label": "Your payouts" },
      h("thead", {}, h("tr", {}, ["Made", "Amount", "Method", "Status", "Reference", "Orders"].map((t) => h("th", {}, t)))), rows), more);
  }, (exc) => mount(body, h("p", { class: "error" }, exc.message)));
  return h("section", { class: "card", "aria-labelledby": "po-title" }, h("h3", { id: "po-title" }, "Payouts"), body);
}
