// The vendor's figures, integrations and after-sale work: sales analytics (a chart of revenue,
// the funnel, top listings, a CSV export), webhooks (create with their events, see the
// secret once, delete), OAuth apps (client credentials, the secret shown once; revoke) and the
// disputes buyers opened (respond, with a refund if you choose).
import { newKey } from "../client.js";
import { field, form, h, money, mount, time } from "../dom.js";

const EVENTS = ["order.created", "order.updated", "listing.low_stock", "listing.updated"];
const idem = () => ({ headers: { "Idempotency-Key": newKey() } });

export function sections(app) {
  return [sales(app), hooks(app), apps(app), disputes(app)];
}

/** Sales analytics (GET /api/v1/vendor/analytics, docs/analytics.md): revenue per day as SVG
 * bars, the funnel, top listings, the repeat-customer rate. */
function sales(app) {
  const { el, body } = panel("Sales (last 30 days, UTC)", "sales-title");
  app.rest.get("/api/v1/vendor/analytics").then((a) => {
    const currency = a.series.find((p) => p.currency)?.currency || null;
    const points = a.series.filter((p) => p.currency === currency);
    const total = points.reduce((n, p) => n + p.revenue, 0);
    const top = Math.max(1, ...points.map((p) => p.revenue));
    const w = 300, hgt = 80, bw = w / Math.max(1, points.length);
    const label = currency ? `Revenue per ${a.granularity}: ${money(total, currency)} in all` : "No sales in this range";
    const chart = h("svg:svg", { viewBox: `0 0 ${w} ${hgt}`, class: "chart", role: "img", "aria-label": label },
      points.map((p, i) => {
        const bh = (p.revenue / top) * (hgt - 4);
        return h("svg:rect", { x: i * bw + 1, y: hgt - bh, width: Math.max(1, bw - 2), height: bh, class: "bar" },
          h("svg:title", {}, `${p.period}: ${currency ? money(p.revenue, currency) : 0} · ${p.orders} orders`));
      }));
    mount(body,
      chart,
      h("p", {}, label),
      h("p", { class: "muted" }, `funnel: ${a.funnel.views} views → ${a.funnel.carts} carts → ${a.funnel.orders} orders · repeat customers ${Math.round(a.repeat_customer_rate * 100)} %`),
      a.top_listings.length
        ? h("ol", { "aria-label": "Top listings" }, a.top_listings.map((t) => h("li", {}, `${t.title}: ${money(t.revenue, t.currency)} (${t.units} sold)`)))
        : null,
      h("p", {}, h("a", { href: "#", onclick: (e) => (e.preventDefault(), exportCsv(app)) }, "Download the orders (CSV)")));
  }, (exc) => mount(body, h("p", { class: "error" }, exc.message)));
  return el;
}

async function exportCsv(app) {
  try {
    const tok = app.rest.tokens.get()?.access_token;
    const resp = await fetch("/api/v1/vendor/analytics/export?format=csv", { headers: { Authorization: `Bearer ${tok}` } });
    if (!resp.ok) throw new Error(`export failed (${resp.status})`);
    const url = URL.createObjectURL(await resp.blob());
    h("a", { href: url, download: "orders.csv" }).click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (exc) {
    app.toast(exc.message);
  }
}

function panel(title, id) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const el = h("section", { class: "card", "aria-labelledby": id }, h("h3", { id }, title), body);
  return { el, body };
}

function hooks(app) {
  const { el, body } = panel("Webhooks", "hooks-title");
  const list = h("ul", { "aria-label": "Your webhooks" });
  const row = (hk) => {
    const li = h("li", { class: "row" }, h("span", {}, hk.target_url, h("span", { class: "muted" }, ` · ${hk.events.join(", ")}${hk.active ? "" : " · disabled"}`)),
      h("button", { type: "button", "aria-label": `Delete the webhook to ${hk.target_url}`, onclick: async () => {
        await app.rest.call("DELETE", `/api/v1/vendor/hooks/${hk.id}`, undefined, idem());
        li.remove();
      } }, "Delete"));
    return li;
  };
  const secret = h("p", { role: "status" });
  const create = form({ "aria-label": "New webhook" }, [
    field("Target URL", h("input", { name: "target_url", type: "url", required: true, placeholder: "https://example.com/hooks" })),
    h("fieldset", {}, h("legend", {}, "Events"), EVENTS.map((ev) => h("label", { class: "check" }, h("input", { type: "checkbox", name: `ev:${ev}`, checked: ev.startsWith("order") }), ` ${ev}`))),
    h("button", { type: "submit" }, "Add webhook"),
  ], async (v, f) => {
    const events = EVENTS.filter((ev) => v[`ev:${ev}`]);
    const hk = await app.rest.call("POST", "/api/v1/vendor/hooks", { target_url: v.target_url, events }, idem());
    list.append(row(hk));
    secret.textContent = `Signing secret (shown once): ${hk.secret}`;
    f.reset();
  });
  app.rest.get("/api/v1/vendor/hooks").then((r) => {
    list.replaceChildren(...r.items.map(row));
    mount(body, list, secret, create);
  }, (exc) => mount(body, h("p", { class: "error" }, exc.message)));
  return el;
}

function apps(app) {
  const { el, body } = panel("Apps (API access)", "apps-title");
  const list = h("ul", { "aria-label": "Your apps" });
  const row = (a) => {
    const li = h("li", { class: "row" }, h("span", {}, a.name, h("span", { class: "muted" }, ` · ${a.client_id}`)),
      h("button", { type: "button", "aria-label": `Revoke the app ${a.name}`, onclick: async () => {
        await app.rest.call("DELETE", `/api/v1/vendor/apps/${encodeURIComponent(a.client_id)}`, undefined, idem());
        li.remove();
      } }, "Revoke"));
    return li;
  };
  const secret = h("p", { role: "status" });
  const create = form({ class: "inline", "aria-label": "New app" }, [field("App name", h("input", { name: "name", required: true, maxlength: 100 })), h("button", { type: "submit" }, "Create app")], async (v, f) => {
    const a = await app.rest.call("POST", "/api/v1/vendor/apps", { name: v.name }, idem());
    list.append(row({ name: v.name, ...a }));
    secret.textContent = `client_id ${a.client_id} · client_secret (shown once): ${a.client_secret}`;
    f.reset();
  });
  app.rest.get("/api/v1/vendor/apps").then((r) => {
    list.replaceChildren(...r.items.map(row));
    mount(body, list, secret, create);
  }, (exc) => mount(body, h("p", { class: "error" }, exc.message)));
  return el;
}

function disputes(app) {
  const { el, body } = panel("Disputes", "vd-title");
  app.rest.get("/api/v1/vendor/disputes?status=open").then((r) => {
    if (!r.items.length) return mount(body, h("p", { class: "muted" }, "No open disputes."));
    mount(body, h("ol", { "aria-label": "Open disputes" }, r.items.map((d) => {
      const li = h("li", { class: "card" }, h("p", {}, h("strong", {}, d.reason), `: ${d.text || ""}`, " · ", time(d.created_at)));
      li.append(form({ "aria-label": `Respond to the dispute on order ${d.order_id}` }, [
        field("Your answer", h("textarea", { name: "text", rows: 2, required: true, maxlength: 2000 })),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "refund" }), " refund the buyer in full"),
        h("button", { type: "submit" }, "Respond"),
      ], async (v) => {
        await app.rest.call("POST", `/api/v1/vendor/disputes/${d.id}/respond`, { text: v.text, refund: Boolean(v.refund) }, idem());
        li.replaceChildren(h("p", { class: "muted" }, "Answered."));
      }));
      return li;
    })));
  }, (exc) => mount(body, h("p", { class: "error" }, exc.message)));
  return el;
}
