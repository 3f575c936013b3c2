// A group room's members (docs/protocol.md, "Chat"): who is in it, kept live by the room's own
// stream (`room.member_added`, `room.member_left`); people found by name added to it (`room.add`:
// any member may add someone); and leaving it (`room.leave`, asked twice), which goes back to
// the list of rooms (the server stops sending the room's messages at once).
import { field, form, h } from "../dom.js";

export function groupPanel(app, room, offs) {
  const members = new Set(room.members);
  const list = h("ul", { class: "members", "aria-label": "Members" });
  const draw = () =>
    list.replaceChildren(...[...members].map((id) => h("li", { dataset: { id } }, id === app.me.id ? "You" : app.name(id))));
  const mine = (e) => e.data.room_id === room.id;
  app.listen(offs, "room.member_added", (e) => mine(e) && (members.add(e.data.user_id), draw()));
  app.listen(offs, "room.member_left", (e) => mine(e) && (members.delete(e.data.user_id), draw()));

  const found = h("ul", { "aria-label": "People to add to the room" });
  const add = async (user, li) => {
    try {
      await app.session.mutate("room.add", { room_id: room.id, user_id: user.id });
    } catch (exc) {
      return app.toast(exc.message);
    }
    members.add(user.id);
    draw();
    li.remove();
    app.toast(`${user.display_name} added`);
  };
  const search = form({ class: "inline", role: "search", "aria-label": "Find people to add" }, [
    field("Add someone", h("input", { name: "q", type: "search", required: true, maxlength: 100 })),
    h("button", { type: "submit" }, "Find"),
  ], async (v) => {
    const r = await app.session.request("search", { q: v.q, kind: "users", limit: 10 });
    found.replaceChildren(...r.items.filter((u) => !members.has(u.id)).map((u) => {
      const li = h("li", { class: "row" }, h("span", {}, u.display_name));
      li.append(h("button", { type: "button", "aria-label": `Add ${u.display_name} to this room`, onclick: () => add(u, li) }, "Add"));
      return li;
    }));
    if (!found.children.length) found.append(h("li", { class: "muted" }, "Nobody new by that name."));
  });

  const leaving = h("div", { class: "row" });
  const ask = () => leaving.replaceChildren(
    h("span", {}, "Leave this group? Someone in it must add you again to come back."),
    h("button", { type: "button", class: "danger", onclick: leave }, "Yes, leave"),
    h("button", { type: "button", onclick: idle }, "Stay"));
  const idle = () => leaving.replaceChildren(h("button", { type: "button", onclick: ask }, "Leave group"));
  async function leave() {
    try {
      await app.session.mutate("room.leave", { room_id: room.id });
    } catch (exc) {
      return app.toast(exc.message);
    }
    app.toast(`You left ${room.title}`);
    location.hash = "#/chat";
  }
  draw();
  idle();
  return h("section", { class: "card", "aria-labelledby": "members-title" },
    h("h3", { id: "members-title" }, "Members"), list, search, found, leaving);
}
