// The admin panel, by role (models/rbac.py decides; the server refuses anything else):
// moderators and admins: the report queue (dismiss, remove, suspend) and users (suspend, lift;
// admins also set roles: admin_users.js); admins: appeals (accept, reject), orders held for
// fraud review (release, reject), disputes (refund, reject), revenue charts and payouts
// (admin_money.js) and the audit log; ops: the cluster view (shards, cells, load).
import { h, mount, time } from "../dom.js";
import { payouts, revenue } from "./admin_money.js";
import { users } from "./admin_users.js";

const MOD = ["moderator", "admin"];

export async function render(app, root) {
  const has = (roles) => app.roles.some((r) => roles.includes(r));
  const sections = [];
  if (has(MOD)) sections.push(section("Moderation queue", "mod", () => reports(app)), section("Users", "users", () => users(app)));
  if (has(["admin"])) {
    sections.push(
      section("Appeals", "appeals", () => appeals(app)),
      section("Held orders (fraud review)", "risk", () => held(app)),
      section("Disputes", "disputes", () => disputes(app)),
      section("Revenue", "revenue", () => revenue(app)),
      section("Payouts", "payouts", () => payouts(app)),
      section("Audit log", "audit", () => audit(app)),
    );
  }
  if (has(["ops"])) sections.push(section("Cluster", "cluster", () => cluster(app)));
  if (!sections.length) return mount(root, h("p", { class: "card" }, "Your account has no staff role."));
  mount(root, h("h2", {}, "Admin"), sections.map((s) => s.el));
  await Promise.all(sections.map((s) => s.load().catch((exc) => s.fail(exc))));
}

function section(title, id, fill) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const reload = h("button", { type: "button", class: "link", "aria-label": `Reload ${title}` }, "Reload");
  const el = h("section", { class: "card", "aria-labelledby": `${id}-title` }, h("div", { class: "row" }, h("h3", { id: `${id}-title` }, title), reload), body);
  const load = async () => mount(body, await fill());
  const fail = (exc) => mount(body, h("p", { class: "error" }, exc.message));
  reload.addEventListener("click", () => load().catch(fail));
  return { el, load, fail };
}

async function reports(app) {
  const page = await app.rest.get("/api/v1/admin/reports?status=open");
  if (!page.items.length) return h("p", { class: "muted" }, "No open reports.");
  return h("ol", { "aria-label": "Open reports" }, page.items.map((r) => {
    const row = h("li", { class: "card", dataset: { id: r.id } },
      h("p", {}, h("strong", {}, `${r.target.kind}: `), r.reason, r.note ? ` — ${r.note}` : "", " · ", time(r.created_at), r.target_reports > 1 ? ` · ${r.target_reports} reports` : ""),
      h("p", { class: "muted" }, `target ${r.target.id}`));
    const act = (action) => async () => {
      try {
        await app.rest.post(`/api/v1/admin/reports/${r.id}/resolve`, { action, note: `from the web panel: ${action}` });
        row.remove();
        app.toast(`Report ${action === "dismiss" ? "dismissed" : "resolved: " + action}`);
      } catch (exc) {
        app.toast(exc.message);
      }
    };
    row.append(h("div", { class: "row" },
      h("button", { type: "button", onclick: act("dismiss") }, "Dismiss"),
      h("button", { type: "button", class: "primary", onclick: act("remove") }, "Remove content"),
      h("button", { type: "button", onclick: act("suspend") }, "Suspend author")));
    return row;
  }));
}

async function disputes(app) {
  const page = await app.rest.get("/api/v1/admin/disputes");
  const items = page.items.filter((d) => d.status === "open" || d.status === "responded");
  if (!items.length) return h("p", { class: "muted" }, "No open disputes.");
  return h("ol", { "aria-label": "Open disputes" }, items.map((d) => {
    const row = h("li", { class: "card" }, h("p", {}, h("strong", {}, d.reason), `: ${d.text || ""}`, " · ", time(d.created_at)),
      h("p", { class: "muted" }, `order ${d.order_id} · ${d.status}`, d.response ? ` · the vendor: ${d.response}` : ""));
    const act = (outcome) => async () => {
      try {
        await app.rest.post(`/api/v1/admin/disputes/${d.id}/resolve`, { outcome, note: "from the web panel" });
        row.remove();
      } catch (exc) {
        app.toast(exc.message);
      }
    };
    row.append(h("div", { class: "row" }, h("button", { type: "button", class: "primary", onclick: act("refund") }, "Refund buyer"), h("button", { type: "button", onclick: act("reject") }, "Reject dispute")));
    return row;
  }));
}

async function appeals(app) {
  const page = await app.rest.get("/api/v1/admin/appeals?status=open");
  if (!page.items.length) return h("p", { class: "muted" }, "No open appeals.");
  return h("ol", { "aria-label": "Open appeals" }, page.items.map((a) => {
    const row = h("li", { class: "card" }, h("p", {}, a.text, " · ", time(a.created_at)), h("p", { class: "muted" }, `action ${a.action_id}`));
    const decide = (accept) => async () => {
      try {
        await app.rest.post(`/api/v1/admin/appeals/${a.id}/decide`, { accept, note: "from the web panel" });
        row.remove();
      } catch (exc) {
        app.toast(exc.message);
      }
    };
    row.append(h("div", { class: "row" }, h("button", { type: "button", class: "primary", onclick: decide(true) }, "Accept appeal"), h("button", { type: "button", onclick: decide(false) }, "Reject appeal")));
    return row;
  }));
}

async function held(app) {
  const page = await app.rest.get("/api/v1/admin/risk/orders");
  if (!page.items.length) return h("p", { class: "muted" }, "No orders held for review.");
  return h("ol", { "aria-label": "Held orders" }, page.items.map((x) => {
    const row = h("li", { class: "card" },
      h("p", {}, h("strong", {}, `risk ${x.risk.score}`), ` · ${x.risk.reasons.join(", ")} · buyer ${x.buyer.email}`),
      h("p", { class: "muted" }, `order ${x.order.id} · held `, time(x.held_at)));
    const act = (what) => async () => {
      try {
        await app.rest.post(`/api/v1/admin/risk/orders/${x.order.id}/${what}`, { note: "from the web panel" });
        row.remove();
      } catch (exc) {
        app.toast(exc.message);
      }
    };
    row.append(h("div", { class: "row" }, h("button", { type: "button", class: "primary", onclick: act("release") }, "Release order"), h("button", { type: "button", onclick: act("reject") }, "Reject order")));
    return row;
  }));
}

async function audit(app) {
  const page = await app.rest.get("/api/v1/admin/audit?limit=50");
  return h("table", { "aria-label": "Audit log" },
    h("thead", {}, h("tr", {}, ["When", "Action", "Target", "Reason", "Result"].map((t) => h("th", {}, t)))),
    h("tbody", {}, page.items.map((a) => h("tr", {}, h("td", {}, time(a.at)), h("td", {}, a.action), h("td", {}, a.target), h("td", {}, a.reason || ""), h("td", {}, typeof a.result === "string" ? a.result : JSON.stringify(a.result))))));
}

async function cluster(app) {
  const c = await app.rest.get("/api/v1/admin/cluster");
  return h("div", {},
    h("p", { class: "muted" }, `placement version ${c.placement_version} · ${c.shards.length} shards`),
    h("table", { "aria-label": "Shards" },
      h("thead", {}, h("tr", {}, ["Shard", "Node", "Up", "Cells", "Active", "Calls/s"].map((t) => h("th", {}, t)))),
      h("tbody", {}, c.shards.map((s) => h("tr", {}, h("td", {}, s.id), h("td", {}, s.node || ""), h("td", {}, s.up === false ? "down" : "up"), h("td", {}, String(s.cells)), h("td", {}, String(s.active_cells)), h("td", {}, (s.calls_per_s || 0).toFixed(1)))))),
    (c.hot_cells || []).length ? h("p", {}, "Hot cells: ", c.hot_cells.map((x) => `${x.cell} (${x.msgs_per_s.toFixed(1)}/s)`).join(", ")) : null);
}

