// The app shell: signs in, opens the one websocket session of this tab, keeps the location,
// and routes hash URLs (#/feed, #/chat/<room>, ...) to views. A view is a module exporting
// `render(ctx, root, params)` that may return a cleanup function (called when the route
// changes); it reaches the server only through `ctx.rest` and `ctx.session` (js/client.js).
import { Rest, Session } from "./client.js";
import { h, mount } from "./dom.js";

const VIEWS = {
  signin: () => import("./views/auth.js"),
  feed: () => import("./views/feed.js"),
  chat: () => import("./views/chat.js"),
  market: () => import("./views/market.js"),
  cart: () => import("./views/market.js"),
  orders: () => import("./views/market.js"),
  notifications: () => import("./views/notifications.js"),
  user: () => import("./views/profile.js"),
  vendor: () => import("./views/vendor.js"),
  admin: () => import("./views/admin.js"),
};
const STAFF = ["moderator", "admin", "ops"];
const $ = (id) => document.getElementById(id);

class App {
  constructor() {
    this.rest = new Rest({ onSignedOut: (reason) => this.signedOut(reason) });
    this.session = null;
    this.me = null;
    this.roles = [];
    this.unread = 0;
    this.location = loadLocation();
    this._users = new Map();
    this._cleanup = null;
    this._offs = [];
    window.addEventListener("hashchange", () => this.route());
  }

  async boot() {
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((e) => console.warn("no service worker", e));
    }
    if (this.rest.signedIn) await this.connect();
    else this.route();
  }

  /** After sign-in (or on load with a stored sign-in): the session, then the current route. */
  async connect() {
    this.session = new Session(this.rest);
    const s = this.session;
    this._offs.push(
      s.on("status", (st) => this.showStatus(st)),
      s.on("signedout", ({ reason }) => this.signedOut(reason)),
      s.on("session.roles", (e) => this.setRoles(e.data.roles)),
      s.on("notification", () => this.bump(1)),
      s.on("order.updated", (e) => this.orderToast(e.data.order)),
    );
    try {
      await s.start();
      const { user } = await this.rest.get("/api/v1/me");
      this.me = user;
      this.setRoles(user.roles || []);
      if (this.location) await this.locate(this.location.lat, this.location.lng).catch(() => null);
      const notes = await s.request("notifications.list", { limit: 1 }).catch(() => ({ unread: 0 }));
      this.unread = notes.unread || 0;
    } catch (exc) {
      if (!this.rest.signedIn) return; // signedOut() already routed
      this.toast(`Could not connect: ${exc.message}`);
    }
    this.renderChrome();
    this.route();
  }

  async locate(lat, lng) {
    const reply = await this.session.locate(lat, lng);
    this.location = { lat, lng };
    localStorage.setItem("hl.location", JSON.stringify(this.location));
    return reply;
  }

  signedOut(reason) {
    for (const off of this._offs.splice(0)) off();
    if (this.session) this.session.stop();
    this.session = null;
    this.me = null;
    this.rest.tokens.set(null);
    this._users.clear();
    this.renderChrome();
    this.toast(reason ? `Signed out: ${reason}` : "Signed out");
    location.hash = "#/signin";
    this.route();
  }

  async signOut() {
    await this.rest.logout().catch(() => null);
    this.signedOut("");
  }

  setRoles(roles) {
    this.roles = roles;
    this.renderChrome();
  }

  isStaff() {
    return this.roles.some((r) => STAFF.includes(r));
  }

  bump(n) {
    this.unread = Math.max(0, this.unread + n);
    const badge = document.querySelector("#tabs .badge");
    if (badge) badge.textContent = this.unread ? String(this.unread) : "";
  }

  orderToast(order) {
    if (order && order.buyer_id === this.me?.id) this.toast(`Order ${order.status.replace("_", " ")}`);
  }

  /** A user's public profile, fetched once per id. */
  user(id) {
    if (!this._users.has(id)) {
      const p = this.session.request("user.get", { user_id: id }).then((r) => r.user);
      p.catch(() => this._users.delete(id));
      this._users.set(id, p);
    }
    return this._users.get(id);
  }

  /** A span that fills in with the user's name. */
  name(id) {
    const span = h("a", { href: `#/user/${id}`, class: "who" }, id === this.me?.id ? "you" : "…");
    if (id !== this.me?.id) this.user(id).then((u) => (span.textContent = u.display_name)).catch(() => (span.textContent = "someone"));
    return span;
  }

  showStatus(status) {
    const el = $("status");
    el.textContent = { open: "live", connecting: "connecting…", reconnecting: "reconnecting…", closed: "offline" }[status] || status;
    el.dataset.state = status;
  }

  toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.classList.add("show");
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => el.classList.remove("show"), 4000);
  }

  renderChrome() {
    const tabs = $("tabs");
    const account = $("account");
    if (!this.me) {
      tabs.hidden = true;
      mount(account);
      return;
    }
    tabs.hidden = false;
    const link = (href, label, extra) => h("a", { href, "data-route": href.split("/")[1] }, label, extra);
    mount(
      tabs,
      link("#/feed", "Feed"),
      link("#/chat", "Chat"),
      link("#/market", "Market"),
      link("#/orders", "Orders"),
      link("#/notifications", "Alerts", h("span", { class: "badge", "aria-label": "unread" }, this.unread ? String(this.unread) : "")),
      link("#/vendor", "Sell"),
      this.isStaff() ? link("#/admin", "Admin") : null,
    );
    mount(
      account,
      h("a", { href: `#/user/${this.me.id}`, "aria-label": "Your profile" }, this.me.display_name),
      h("button", { type: "button", class: "link", onclick: () => this.signOut() }, "Sign out"),
    );
    this.markTab();
  }

  markTab() {
    const name = (location.hash.split("/")[1] || "feed").split("?")[0];
    for (const a of document.querySelectorAll("#tabs a")) {
      if (a.dataset.route === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  async route() {
    const parts = location.hash.replace(/^#\/?/, "").split("/");
    let name = parts[0] || "feed";
    if (!this.me && name !== "signup") name = "signin";
    if (name === "signup") name = "signin";
    if (this.me && name === "signin") name = "feed";
    const load = VIEWS[name] || VIEWS.feed;
    const root = $("main");
    if (this._cleanup) this._cleanup();
    this._cleanup = null;
    const token = (this._routeToken = {});
    const mod = await load();
    if (token !== this._routeToken) return; // a later route is on its way
    // Each route renders into a slot of its own: a view still rendering when the next route
    // starts (a slow reply) writes into its slot, no longer in the page, never over the next.
    const slot = h("div", { class: "view" });
    mount(root, slot);
    this.markTab();
    const cleanup = await mod.render(this, slot, { name, args: parts.slice(1), mode: parts[0] });
    if (token !== this._routeToken) {
      if (cleanup) cleanup();
      return;
    }
    this._cleanup = cleanup || null;
  }

  /** Subscribe to session events for the life of the current view. */
  listen(offs, name, fn) {
    offs.push(this.session.on(name, fn));
  }
}

function loadLocation() {
  try {
    return JSON.parse(localStorage.getItem("hl.location") || "null");
  } catch {
    return null;
  }
}

const app = new App();
window.hyperlocal = app; // for the console and the browser tests
app.boot();
