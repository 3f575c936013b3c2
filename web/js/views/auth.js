// Sign in (with the two-factor prompt when the account answers `otp_required`), sign up, and
// the appeal a suspended account may send (with its email and password: it has no token).
import { field, form, h, mount } from "../dom.js";

export function render(app, root, { mode }) {
  if (mode === "signup") return signup(app, root);
  let otp = null;
  const otpField = h("div", { hidden: true });
  const signin = form(
    { class: "card narrow", "aria-label": "Sign in" },
    [
      h("h2", {}, "Sign in"),
      field("Email", h("input", { name: "email", type: "email", autocomplete: "username", required: true })),
      field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
      otpField,
      h("button", { type: "submit", class: "primary" }, "Sign in"),
      h("p", {}, "New here? ", h("a", { href: "#/signup" }, "Create an account")),
    ],
    async (v) => {
      try {
        await app.rest.login(v.email, v.password, v.otp || undefined);
      } catch (exc) {
        if (exc.details?.reason === "suspended" && exc.details.action_id) {
          return appeal(app, root, v.email, v.password, exc.details);
        }
        if (exc.code === "otp_required" && !otp) {
          otp = h("input", { name: "otp", inputmode: "numeric", autocomplete: "one-time-code", required: true });
          mount(otpField, field("Two-factor code", otp, "the 6-digit code of your authenticator app, or a recovery code"));
          otpField.hidden = false;
          otp.focus();
          throw new Error("Enter your two-factor code");
        }
        throw exc;
      }
      await app.connect();
    },
  );
  mount(root, signin);
  signin.querySelector("input").focus();
}

function signup(app, root) {
  const f = form(
    { class: "card narrow", "aria-label": "Sign up" },
    [
      h("h2", {}, "Create an account"),
      field("Your name", h("input", { name: "display_name", autocomplete: "name", required: true, maxlength: 100 })),
      field("Email", h("input", { name: "email", type: "email", autocomplete: "email", required: true })),
      field("Password", h("input", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 8 }), "at least 8 characters"),
      h("button", { type: "submit", class: "primary" }, "Sign up"),
      h("p", {}, "Have an account? ", h("a", { href: "#/signin" }, "Sign in")),
    ],
    async (v) => {
      await app.rest.signup(v.email, v.password, v.display_name);
      location.hash = "#/feed";
      await app.connect();
    },
  );
  mount(root, f);
  f.querySelector("input").focus();
}

function appeal(app, root, email, password, details) {
  const until = details.until ? ` until ${new Date(details.until).toLocaleString()}` : "";
  const basic = btoa(String.fromCharCode(...new TextEncoder().encode(`${email}:${password}`)));
  const f = form(
    { class: "card narrow", "aria-label": "Appeal the suspension" },
    [
      h("h2", {}, "Your account is suspended"),
      h("p", {}, `A moderator suspended this account${until}. You can ask an admin to lift it.`),
      field("Your appeal", h("textarea", { name: "text", rows: 4, required: true, maxlength: 2000 })),
      h("button", { type: "submit", class: "primary" }, "Send appeal"),
      h("p", {}, h("a", { href: "#/signin", onclick: () => setTimeout(() => app.route()) }, "Back to sign in")),
    ],
    async (v) => {
      const headers = { Authorization: `Basic ${basic}` };
      await app.rest.call("POST", "/api/v1/appeals", { action_id: details.action_id, text: v.text }, { auth: false, headers });
      mount(root, h("section", { class: "card narrow", role: "status" }, h("h2", {}, "Appeal sent"), h("p", {}, "An admin will read it and you will be notified of the decision.")));
    },
  );
  mount(root, f);
}
