// Sign in (with the two-factor prompt when the account answers `otp_required`) and sign up.
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
