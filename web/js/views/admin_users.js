// User actions of the admin panel (docs/admin.md): find a person by name (the `search` op),
// then, by role: their roles (admin: moderator, admin, ops; the server keeps `user`, and
// `vendor` follows the vendor profile) and a suspension with its reason, or lifting it
// (moderators and admins). Every change is audited by the control actor, and a role change
// reaches the person's open tabs at once (`session.roles`).
import { field, form, h, mount } from "../dom.js";

const STAFF_ROLES = ["moderator", "admin", "ops"];

export async function users(app) {
  const found = h("ul", { "aria-label": "Users found" });
  const card = h("div");
  const search = form({ class: "inline", role: "search", "aria-label": "Find a user" }, [
    field("Find a user by name", h("input", { name: "q", type: "search", required: true, maxlength: 100 })),
    h("button", { type: "submit" }, "Find"),
  ], async (v) => {
    const r = await app.session.request("search", { q: v.q, kind: "users", limit: 10 });
    found.replaceChildren(...r.items.map((u) => h("li", { class: "row" }, h("span", {}, u.display_name),
      h("button", { type: "button", "aria-label": `Manage ${u.display_name}`, onclick: () => open(app, card, u.id).catch((exc) => app.toast(exc.message)) }, "Manage"))));
    if (!found.children.length) found.append(h("li", { class: "muted" }, "Nobody by that name."));
  });
  return h("div", {}, search, found, card);
}

async function open(app, card, id) {
  const { user } = await app.rest.get(`/api/v1/admin/users/${encodeURIComponent(id)}`);
  const isAdmin = app.roles.includes("admin");
  const draw = (u) => mount(card, h("section", { class: "card", "aria-label": `User ${u.display_name}` },
    h("p", {}, h("strong", {}, u.display_name), ` · ${u.email || "no email"} · roles: `, h("span", { class: "roles" }, u.roles.join(", "))),
    u.suspended ? h("p", { class: "error" }, `Suspended${u.suspended_until ? ` until ${new Date(u.suspended_until).toLocaleString()}` : ""}: ${u.suspension_reason || ""}`) : null,
    isAdmin ? rolesForm(app, u, draw) : null,
    u.suspended ? unsuspend(app, u, draw) : suspend(app, u, draw)));
  draw(user);
}

function rolesForm(app, u, draw) {
  return form({ "aria-label": `Roles of ${u.display_name}` }, [
    h("fieldset", {}, h("legend", {}, "Staff roles"), STAFF_ROLES.map((r) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: r, checked: u.roles.includes(r) }), ` ${r}`))),
    h("button", { type: "submit" }, "Save roles"),
  ], async (v) => {
    const roles = ["user", ...STAFF_ROLES.filter((r) => v[r])];
    const r = await app.rest.post(`/api/v1/admin/users/${encodeURIComponent(u.id)}/roles`, { roles });
    draw(r.user);
    app.toast(`Roles of ${u.display_name}: ${r.user.roles.join(", ")}`);
  });
}

function suspend(app, u, draw) {
  return form({ "aria-label": `Suspend ${u.display_name}` }, [
    field("Reason for the suspension", h("input", { name: "reason", required: true, maxlength: 500 })),
    h("button", { type: "submit" }, "Suspend user"),
  ], async (v) => {
    const r = await app.rest.post(`/api/v1/admin/users/${encodeURIComponent(u.id)}/suspend`, { reason: v.reason });
    draw(r.user);
    app.toast(`${u.display_name} is suspended`);
  });
}

function unsuspend(app, u, draw) {
  return form({ "aria-label": `Lift the suspension of ${u.display_name}` }, [
    h("button", { type: "submit" }, "Lift suspension"),
  ], async () => {
    const r = await app.rest.post(`/api/v1/admin/users/${encodeURIComponent(u.id)}/unsuspend`, {});
    draw(r.user);
    app.toast(`${u.display_name} may sign in again`);
  });
}
