// Where the vendor's payouts go (docs/payments.md, "Payout account"): a Stripe connected
// account, or bank details for the operator's manual payouts, by IBAN or by account number,
// bank code and country. The server keeps the bank details sealed and only ever shows them
// masked (the holder, the country, the bank code, the last four characters), so neither does
// this page: GET, PUT and DELETE /api/v1/vendor/payout-account. A refused account (an IBAN
// whose check digits fail, a malformed acct_ id) shows the server's reason on the form.
import { field, form, h, mount, time } from "../dom.js";

const PATH = "/api/v1/vendor/payout-account";
const FORMS = {
  stripe_connect: "Stripe connected account",
  iban: "Bank account (IBAN)",
  account_number: "Bank account (account number and bank code)",
};

function describe(a) {
  if (a.kind === "stripe_connect") return `Stripe connected account ${a.account_id}`;
  const code = a.bank_code ? `, bank code ${a.bank_code}` : "";
  const what = a.form === "iban" ? "IBAN" : "account";
  return `Bank: ${a.holder_name}, ${a.country} ${what} ending ${a.account_last4}${code}`;
}

/** The fields each form asks for, and the body a submitted form becomes. */
const FIELDS = {
  stripe_connect: () => [field("Stripe account id", h("input", { name: "account_id", required: true, maxlength: 80, placeholder: "acct_…", autocomplete: "off" }))],
  iban: () => [
    field("Account holder", h("input", { name: "holder_name", required: true, maxlength: 100, autocomplete: "name" })),
    field("IBAN", h("input", { name: "iban", required: true, maxlength: 50, autocomplete: "off" })),
    field("BIC (optional)", h("input", { name: "bank_code", maxlength: 20, autocomplete: "off" })),
  ],
  account_number: () => [
    field("Account holder", h("input", { name: "holder_name", required: true, maxlength: 100, autocomplete: "name" })),
    field("Account number", h("input", { name: "account_number", required: true, maxlength: 30, inputmode: "numeric", autocomplete: "off" })),
    field("Bank code", h("input", { name: "bank_code", required: true, maxlength: 20, autocomplete: "off" }), "routing number, sort code, IFSC…"),
    field("Country", h("input", { name: "country", required: true, maxlength: 2, autocomplete: "off" }), "two letters, e.g. US"),
  ],
};

function body(kind, v) {
  if (kind === "stripe_connect") return { kind, account_id: v.account_id.trim() };
  const out = { kind: "bank", holder_name: v.holder_name };
  for (const k of ["iban", "account_number", "country"]) if (v[k]) out[k] = v[k];
  if (v.bank_code) out.bank_code = v.bank_code;
  return out;
}

export function payoutAccount(app) {
  const current = h("div", { role: "status" }, h("p", { class: "muted" }, "Loading…"));
  const show = (a) => {
    if (!a) return mount(current, h("p", { class: "muted" }, "No payout account: payouts are recorded for the operator to pay by hand."));
    mount(current, h("p", {}, describe(a), h("span", { class: "muted" }, " · set ", time(a.updated_at))),
      h("button", { type: "button", "aria-label": "Remove the payout account", onclick: async () => {
        try {
          show((await app.rest.del(PATH)).payout_account);
          app.toast("Payout account removed");
        } catch (exc) {
          app.toast(exc.message);
        }
      } }, "Remove"));
  };
  const kind = h("select", { name: "form" }, Object.entries(FORMS).map(([k, label]) => h("option", { value: k }, label)));
  const fields = h("div");
  const drawFields = () => mount(fields, FIELDS[kind.value]());
  kind.addEventListener("change", drawFields);
  const set = form({ "aria-label": "Set the payout account" }, [field("Pay out to", kind), fields, h("button", { type: "submit" }, "Save payout account")], async (v, f) => {
    const { payout_account } = await app.rest.put(PATH, body(kind.value, v));
    show(payout_account);
    const chosen = kind.value;
    f.reset(); // the details leave the page; the form chosen stays
    kind.value = chosen;
    drawFields();
    app.toast("Payout account saved");
  });
  drawFields();
  app.rest.get(PATH).then((r) => show(r.payout_account), (exc) => mount(current, h("p", { class: "error" }, exc.message)));
  return h("section", { class: "card", "aria-labelledby": "pa-title" }, h("h3", { id: "pa-title" }, "Payout account"), current, set,
    h("p", { class: "muted" }, "Bank details are stored sealed and shown only masked; only your own sign-in can change them, never an app's token."));
}
