// The vendor's figures, integrations and after-sale work: sales analytics (vendor_sales.js),
// balance and payouts (vendor_money.js), the payout account (vendor_payout.js), webhooks (create with their events, see the
// secret once, delete), OAuth apps (client credentials, the secret shown once; revoke) and the
// disputes buyers opened (respond, with a refund if you choose).
import { newKey } from "../client.js";
import { field, form, h, mount, time } from "../dom.js";
import { balance, payouts } from "./vendor_money.js";
import { payoutAccount } from "./vendor_payout.js";
import { sales } from "./vendor_sales.js";

const EVENTS = ["order.created", "order.updated", "listing.low_stock", "listing.updated"];
const idem = () => ({ headers: { "Idempotency-Key": newKey() } });

export function sections(app) {
  return [sales(app), balance(app), payoutAccount(app), payouts(app), hooks(app), apps(app), disputes(app)];
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
