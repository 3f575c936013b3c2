// Chat: the neighbourhood room of your cell, your direct and group rooms (with vendors too),
// live messages, typing, read receipts and presence, as the protocol has them; a new group room
// (`room.create {title, members}`: a name and people found by name); a group room's members,
// adding someone and leaving it (chat_group.js).
import { field, form, h, mount, time } from "../dom.js";
import { groupPanel } from "./chat_group.js";

export async function render(app, root, { args }) {
  if (args[0]) return room(app, root, decodeURIComponent(args[0]));
  const cell = app.session.located?.cell;
  const { rooms } = await app.session.request("rooms.list");
  mount(
    root,
    h("h2", {}, "Chat"),
    h(
      "nav",
      { class: "card rooms", "aria-label": "Rooms" },
      cell ? h("a", { href: `#/chat/cell-${cell}` }, "Neighbourhood room") : h("p", { class: "muted" }, "Set your location to join the neighbourhood room."),
      rooms.map((r) => {
        const unread = r.last_offset > r.read_offset;
        const label = h("span", {}, r.title || "Direct chat");
        const a = h("a", { href: `#/chat/${encodeURIComponent(r.id)}`, class: unread ? "unread" : "" }, label, unread ? " (new)" : "");
        if (!r.title) {
          const other = r.members.find((m) => m !== app.me.id);
          if (other) app.user(other).then((u) => (label.textContent = `Chat with ${u.display_name}`)).catch(() => null);
        }
        return a;
      }),
    ),
    findPeople(app),
    newGroup(app),
    h("p", { class: "muted" }, "Or start a direct chat from someone's profile, or message a vendor from a listing or an order."),
  );
}

function findPeople(app) {
  const results = h("ul", { "aria-label": "People found" });
  const f = form({ class: "inline", role: "search", "aria-label": "Search people" }, [field("Find people", h("input", { name: "q", type: "search", required: true, maxlength: 100 })), h("button", { type: "submit" }, "Search")], async (v) => {
    const found = await app.session.request("search", { q: v.q, kind: "users", limit: 10 });
    results.replaceChildren(
      ...found.items.filter((u) => u.id !== app.me.id).map((u) =>
        h("li", { class: "row" }, h("a", { href: `#/user/${u.id}` }, u.display_name), h("button", { type: "button", "aria-label": `Message ${u.display_name}`, onclick: async () => {
          const { room } = await app.session.request("chat.open", { user_id: u.id });
          location.hash = `#/chat/${encodeURIComponent(room.id)}`;
        } }, "Message"))),
    );
    if (!results.children.length) results.append(h("li", { class: "muted" }, "Nobody by that name."));
  });
  return h("section", { class: "card", "aria-label": "Start a chat" }, f, results);
}

/** A group room: its name and its members, picked from people found by name; created in your
 * located cell (the server says `bad_request` before a location, shown on the form). */
function newGroup(app) {
  const chosen = new Map(); // user id -> name
  const members = h("ul", { "aria-label": "Members of the new group" });
  const found = h("ul", { "aria-label": "People to add" });
  const drawMembers = () => {
    members.replaceChildren(...[...chosen].map(([id, name]) => h("li", { class: "row" }, h("span", {}, name),
      h("button", { type: "button", "aria-label": `Remove ${name} from the group`, onclick: () => (chosen.delete(id), drawMembers()) }, "Remove"))));
    if (!chosen.size) members.append(h("li", { class: "muted" }, "Nobody added yet."));
  };
  const pick = form({ class: "inline", role: "search", "aria-label": "Search people for the group" }, [field("Add people", h("input", { name: "q", type: "search", required: true, maxlength: 100 })), h("button", { type: "submit" }, "Find")], async (v) => {
    const r = await app.session.request("search", { q: v.q, kind: "users", limit: 10 });
    found.replaceChildren(...r.items.filter((u) => u.id !== app.me.id).map((u) => h("li", { class: "row" }, h("span", {}, u.display_name),
      h("button", { type: "button", "aria-label": `Add ${u.display_name} to the group`, onclick: () => (chosen.set(u.id, u.display_name), drawMembers()) }, "Add"))));
    if (!found.children.length) found.append(h("li", { class: "muted" }, "Nobody by that name."));
  });
  const create = form({ "aria-label": "New group room" }, [
    field("Group name", h("input", { name: "title", required: true, maxlength: 100 })),
    h("button", { type: "submit", class: "primary" }, "Create group"),
  ], async (v) => {
    if (!chosen.size) throw new Error("Add at least one person first");
    const { room } = await app.session.mutate("room.create", { title: v.title, members: [...chosen.keys()] });
    location.hash = `#/chat/${encodeURIComponent(room.id)}`;
  });
  drawMembers();
  return h("section", { class: "card", "aria-labelledby": "ng-title" }, h("h3", { id: "ng-title" }, "New group room"), pick, found, members, create);
}

async function room(app, root, roomId) {
  const offs = [];
  const stream = `room:${roomId}`;
  const neighbourhood = roomId.startsWith("cell-");
  const seen = new Set();
  const readBy = new Map(); // user -> offset
  let lastOffset = 0;
  const list = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  const typing = h("p", { class: "typing", "aria-live": "polite" });
  const presence = h("p", { class: "presence" });
  const receipt = h("p", { class: "muted receipt", "aria-live": "polite" });
  const here = new Set();

  const showPresence = async () => {
    const names = await Promise.all([...here].filter((u) => u !== app.me.id).map((u) => app.user(u).then((x) => x.display_name).catch(() => "someone")));
    presence.textContent = names.length ? `Here now: ${names.join(", ")}` : "Nobody else is here right now";
  };
  const showReceipt = () => {
    const mine = [...list.querySelectorAll(".msg.mine")].pop();
    if (!mine) return (receipt.textContent = "");
    const off = Number(mine.dataset.offset);
    const who = [...readBy.entries()].filter(([u, o]) => u !== app.me.id && o >= off);
    receipt.textContent = who.length ? "Seen" : "";
  };
  const markRead = () => {
    if (neighbourhood || !lastOffset) return;
    app.session.mutate("chat.read", { room_id: roomId, offset: lastOffset }).catch(() => null);
  };
  const add = (m) => {
    if (seen.has(m.id)) return;
    seen.add(m.id);
    lastOffset = Math.max(lastOffset, m.offset);
    const mine = m.sender_id === app.me.id;
    list.append(
      h("li", { class: `msg${mine ? " mine" : ""}`, dataset: { id: m.id, offset: m.offset } },
        h("div", { class: "meta" }, app.name(m.sender_id), " · ", time(m.created_at)),
        h("div", { class: "body" }, m.text)),
    );
    list.scrollTop = list.scrollHeight;
    showReceipt();
  };
  const load = async () => {
    list.replaceChildren();
    seen.clear();
    const { messages } = await app.session.request("chat.history", { room_id: roomId, limit: 50 });
    messages.forEach(add);
    markRead();
  };

  app.listen(offs, "chat.message", (e) => {
    const m = e.data.message;
    if (m.room_id !== roomId) return;
    add(m);
    if (m.sender_id !== app.me.id) markRead();
  });
  app.listen(offs, "chat.read", (e) => {
    if (e.data.room_id !== roomId) return;
    readBy.set(e.data.user_id, e.data.offset);
    showReceipt();
  });
  let typingTimer = null;
  app.listen(offs, "chat.typing", async (e) => {
    if (e.data.room_id !== roomId || e.data.user_id === app.me.id) return;
    const u = await app.user(e.data.user_id).catch(() => ({ display_name: "someone" }));
    typing.textContent = `${u.display_name} is typing…`;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => (typing.textContent = ""), 4000);
  });
  app.listen(offs, "presence.join", (e) => e.data.stream === stream && (here.add(e.data.user_id), showPresence()));
  app.listen(offs, "presence.leave", (e) => e.data.stream === stream && (here.delete(e.data.user_id), showPresence()));
  app.listen(offs, "reset", (e) => e.stream === stream && load());

  let lastTyping = 0;
  const input = h("input", {
    name: "text",
    required: true,
    maxlength: 2000,
    autocomplete: "off",
    oninput: () => {
      if (Date.now() - lastTyping < 3000) return;
      lastTyping = Date.now();
      app.session.request("chat.typing", { room_id: roomId }).catch(() => null);
    },
  });
  const send = form({ class: "inline", "aria-label": "Send a message" }, [field("Message", input), h("button", { type: "submit", class: "primary" }, "Send")], async (v, f) => {
    const { message } = await app.session.mutate("chat.send", { room_id: roomId, text: v.text });
    add(message);
    f.reset();
    input.focus();
  });

  const heading = h("h2", { id: "room-title" }, neighbourhood ? "Neighbourhood room" : "Chat");
  const group = h("div");
  let gone = false; // the view was left: add no listeners after its cleanup
  if (!neighbourhood) {
    app.session.request("rooms.list").then(({ rooms }) => {
      const r = rooms.find((x) => x.id === roomId);
      if (r?.title) heading.textContent = r.title; // a group room's name
      if (r?.kind === "group" && !gone) mount(group, groupPanel(app, r, offs));
    }).catch(() => null);
  }
  mount(root, h("p", {}, h("a", { href: "#/chat" }, "← All rooms")), heading, presence, h("section", { class: "card", "aria-labelledby": "room-title" }, list, receipt, typing, send), group);
  if (!neighbourhood) {
    await app.session.subscribe(stream);
    offs.push(() => app.session?.unsubscribe(stream).catch(() => null));
  }
  await load();
  const who = await app.session.request("presence.get", { stream }).catch(() => ({ users: [] }));
  who.users.forEach((u) => here.add(typeof u === "string" ? u : u.user_id));
  showPresence();
  input.focus();
  return () => {
    gone = true;
    offs.forEach((off) => off());
  };
}
