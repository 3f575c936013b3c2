// The notification centre: the durable list (notifications.list), live additions from the
// inbox, mark read, and the Web Push opt-in (the service worker shows the pushes).
import { h, mount, time } from "../dom.js";

const TEXT = {
  "post.liked": "liked your post",
  "comment.created": "commented on your post",
  "user.followed": "followed you",
  "post.shared": "shared your post",
  "room.opened": "started a chat with you",
  "room.added": "added you to a room",
  "order.updated": "an order changed",
  "dispute.updated": "a dispute changed",
  promotion: "a vendor nearby has news",
};

export async function render(app, root) {
  const offs = [];
  const list = h("ol", { "aria-label": "Notifications", "aria-live": "polite" });
  const summary = h("p", { class: "muted", role: "status" });
  const item = (n) => {
    const who = (n.actors || []).slice(0, 3);
    const what = n.kind === "order.updated" ? `Order ${n.data.order?.status?.replace("_", " ") || "updated"}` : TEXT[n.kind] || n.kind;
    return h("li", { class: `card${n.read ? "" : " unread"}`, dataset: { id: n.id } },
      who.length ? [who.map((u) => app.name(u.id || u)), " "] : null,
      n.count > 1 ? `and ${n.count - 1} more ` : "",
      what, " · ", time(n.created_at),
      n.data?.post_id ? [" · ", h("a", { href: "#/feed" }, "see the feed")] : null,
      n.data?.room?.id ? [" · ", h("a", { href: `#/chat/${encodeURIComponent(n.data.room.id)}` }, "open the chat")] : null);
  };
  const load = async () => {
    const page = await app.session.request("notifications.list", { limit: 50 });
    list.replaceChildren(...page.items.map(item));
    if (!page.items.length) list.append(h("li", { class: "muted" }, "Nothing yet."));
    summary.textContent = `${page.unread} unread`;
    app.unread = page.unread;
    app.bump(0);
  };
  const readAll = async () => {
    const r = await app.session.mutate("notifications.read", { all: true });
    summary.textContent = `${r.unread} unread`;
    app.unread = r.unread;
    app.bump(0);
    list.querySelectorAll(".unread").forEach((el) => el.classList.remove("unread"));
  };
  app.listen(offs, "notification", () => load());
  app.listen(offs, "reset", (e) => e.stream.startsWith("user:") && load());
  mount(
    root,
    h("div", { class: "row" }, h("h2", {}, "Notifications"), h("button", { type: "button", onclick: readAll }, "Mark all read")),
    summary,
    pushOptIn(app),
    list,
  );
  await load();
  return () => offs.forEach((off) => off());
}

function pushOptIn(app) {
  if (!("PushManager" in window) || !navigator.serviceWorker) return null;
  const btn = h("button", { type: "button", class: "link" }, "Get push notifications on this device");
  btn.addEventListener("click", async () => {
    try {
      const { key } = await app.rest.get("/api/v1/push/vapid-public-key");
      const reg = await navigator.serviceWorker.ready;
      const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64url(key) });
      await app.rest.post("/api/v1/me/push-subscriptions", sub.toJSON());
      app.toast("Push notifications are on for this device");
    } catch (exc) {
      app.toast(`Push is not available: ${exc.message}`);
    }
  });
  return h("p", {}, btn);
}

function b64url(s) {
  const pad = "=".repeat((4 - (s.length % 4)) % 4);
  const raw = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}
