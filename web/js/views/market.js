// The marketplace for buyers: nearby listings (search, category, price, sort), the cart,
// checkout with the sandbox card, and orders whose status changes live (order.updated).
import { field, form, h, money, mount, time } from "../dom.js";

export function render(app, root, { mode, args }) {
  if (mode === "cart") return cart(app, root);
  if (mode === "orders") return orders(app, root, args[0]);
  return market(app, root);
}

async function openChat(app, data) {
  try {
    const { room } = await app.session.request("chat.open", data);
    location.hash = `#/chat/${encodeURIComponent(room.id)}`;
  } catch (exc) {
    app.toast(exc.message);
  }
}

async function market(app, root) {
  if (!app.location) {
    mount(root, h("p", { class: "card" }, "Set your location on the ", h("a", { href: "#/feed" }, "feed"), " to see what is for sale nearby."));
    return;
  }
  const offs = [];
  const grid = h("ul", { class: "listings", "aria-label": "Listings near you" });
  const cards = new Map();
  let query = {};
  let next = null;
  const more = h("button", { type: "button", hidden: true, onclick: () => load(false) }, "More listings");

  const card = (l) => {
    const stock = h("span", { class: "stock" });
    const addBtn = h("button", { type: "button", class: "primary", "aria-label": `Add ${l.title} to cart` }, "Add to cart");
    const draw = (x) => {
      stock.textContent = x.stock > 0 ? `${x.stock} left` : "sold out";
      addBtn.disabled = x.stock <= 0;
    };
    addBtn.addEventListener("click", async () => {
      try {
        await app.session.mutate("cart.add", { listing_id: l.id, qty: 1 });
        app.toast(`${l.title} is in your cart`);
      } catch (exc) {
        app.toast(exc.message);
      }
    });
    const el = h(
      "li",
      { class: "card listing", dataset: { id: l.id } },
      h("article", { "aria-label": l.title },
        (l.images || []).slice(0, 1).map((id) => h("img", { src: `/media/${id}/256.webp`, alt: l.title })),
        h("h3", {}, l.title),
        h("p", { class: "muted" }, l.vendor?.name || "", l.distance_m != null ? ` · ${Math.round(l.distance_m)} m` : ""),
        h("p", {}, h("span", { class: "price" }, money(l.price, l.currency)), " · ", stock),
        l.description ? h("p", { class: "muted" }, l.description) : null,
        h("div", { class: "row" }, addBtn, h("button", { type: "button", onclick: () => openChat(app, { vendor_id: l.vendor_id }), "aria-label": `Message ${l.vendor?.name || "the vendor"}` }, "Message vendor")),
      ),
    );
    draw(l);
    cards.set(l.id, { el, draw });
    return el;
  };
  const load = async (fresh) => {
    const data = { ...app.location, ...query, limit: 20 };
    if (!fresh && next) data.cursor = next;
    const page = await app.session.request("listings.nearby", data);
    if (fresh) {
      grid.replaceChildren();
      cards.clear();
    }
    for (const l of page.items) grid.append(card(l));
    if (fresh && !page.items.length) grid.append(h("li", { class: "muted" }, "No listings match."));
    next = page.next_cursor;
    more.hidden = !next;
  };
  app.listen(offs, "listing.updated", (e) => {
    const l = e.data.listing;
    const c = cards.get(l.id);
    if (!c) return;
    if (!l.active) c.el.remove();
    else c.draw(l);
  });
  app.listen(offs, "reset", (e) => e.stream.startsWith("feed:") && load(true));

  const filters = form(
    { class: "card", "aria-label": "Search listings", role: "search" },
    [
      field("Search", h("input", { name: "q", type: "search", placeholder: "bread, bike repair…" })),
      h("div", { class: "row" },
        field("Category", h("input", { name: "category", placeholder: "any" })),
        field("Max price (cents)", h("input", { name: "max_price", type: "number", min: 0 })),
        field("Sort", h("select", { name: "sort" }, ...["distance", "newest", "price", "relevance"].map((s) => h("option", { value: s }, s))))),
      h("button", { type: "submit" }, "Search"),
    ],
    async (v) => {
      query = {};
      if (v.q) query.q = v.q;
      if (v.category) query.category = v.category.toLowerCase();
      if (v.max_price) query.max_price = Number(v.max_price);
      if (v.sort) query.sort = v.sort;
      await load(true);
    },
  );
  mount(root, h("div", { class: "row" }, h("h2", {}, "Market"), h("a", { href: "#/cart" }, "Your cart")), filters, grid, more);
  await load(true);
  return () => offs.forEach((off) => off());
}

async function cart(app, root) {
  const body = h("div");
  const draw = (c) => {
    if (!c.items.length) return mount(body, h("p", { class: "card" }, "Your cart is empty. ", h("a", { href: "#/market" }, "Browse the market")));
    mount(
      body,
      h("table", { "aria-label": "Cart" },
        h("thead", {}, h("tr", {}, h("th", {}, "Item"), h("th", {}, "Qty"), h("th", {}, "Price"), h("th", {}, h("span", { class: "muted" }, "Actions")))),
        h("tbody", {}, c.items.map((i) => h("tr", {},
          h("td", {}, i.listing.title),
          h("td", {}, String(i.qty)),
          h("td", {}, money(i.listing.price * i.qty, i.listing.currency)),
          h("td", {}, h("button", { type: "button", "aria-label": `Remove ${i.listing.title}`, onclick: async () => draw(await app.session.mutate("cart.remove", { listing_id: i.listing_id })) }, "Remove")))))),
      h("p", { class: "price" }, "Total: ", Object.entries(c.totals).map(([cur, amt]) => money(amt, cur)).join(" + ")),
      checkoutForm(app),
    );
  };
  mount(root, h("h2", {}, "Your cart"), body);
  draw(await app.session.request("cart.get"));
}

function checkoutForm(app) {
  const key = crypto.randomUUID(); // one checkout: a retry of this form resumes it
  return form(
    { class: "card", "aria-label": "Checkout" },
    [
      h("h3", {}, "Checkout"),
      field("Card number", h("input", { name: "card", inputmode: "numeric", autocomplete: "cc-number", required: true, value: "4242424242424242" }), "sandbox: 4242 4242 4242 4242 approves, 4000 0000 0000 0002 is declined"),
      h("button", { type: "submit", class: "primary" }, "Pay"),
    ],
    async (v) => {
      const r = await app.session.request("checkout", { payment: { provider: "sandbox", card: v.card.replace(/\s+/g, "") } }, { key });
      app.toast(`Paid: ${r.orders.length} order${r.orders.length > 1 ? "s" : ""}`);
      location.hash = "#/orders";
    },
  );
}

async function orders(app, root) {
  const offs = [];
  const list = h("ol", { "aria-label": "Your orders" });
  const rows = new Map();
  const item = (o) => {
    const pill = h("span", { class: "status-pill", role: "status" });
    const actions = h("div", { class: "row" });
    const el = h("li", { class: "card order", dataset: { id: o.id } },
      h("article", { "aria-label": `Order from ${o.vendor?.name || "a vendor"}` },
        h("div", { class: "row" }, h("strong", {}, o.vendor?.name || "Vendor"), pill),
        h("p", {}, o.items.map((i) => `${i.qty} × ${i.title}`).join(", "), " · ", money(o.total, o.currency)),
        h("p", { class: "muted" }, "ordered ", time(o.created_at)),
        actions));
    const draw = (x) => {
      pill.textContent = x.status.replace("_", " ");
      pill.dataset.status = x.status;
      pill.setAttribute("aria-label", `Order status: ${x.status.replace("_", " ")}`);
      mount(actions,
        h("button", { type: "button", onclick: () => openChat(app, { order_id: x.id }) }, "Message vendor"),
        ["pending_payment", "paid"].includes(x.status) ? h("button", { type: "button", onclick: () => act("order.cancel", x) }, "Cancel order") : null,
        x.status === "fulfilled" ? h("button", { type: "button", class: "primary", onclick: () => act("order.complete", x) }, "Confirm receipt") : null,
        ["paid", "accepted", "fulfilled", "completed"].includes(x.status) ? h("button", { type: "button", class: "link", onclick: () => dispute(x) }, "Report a problem") : null);
    };
    draw(o);
    rows.set(o.id, { el, draw });
    return el;
  };
  const act = async (op, o) => {
    try {
      const r = await app.session.mutate(op, { order_id: o.id });
      rows.get(o.id)?.draw(r.order);
    } catch (exc) {
      app.toast(exc.message);
    }
  };
  const dispute = async (o) => {
    const text = prompt("What went wrong with this order?");
    if (!text) return;
    try {
      await app.session.mutate("dispute.open", { order_id: o.id, reason: "other", text });
      app.toast("Dispute opened: the vendor and our team will look at it");
    } catch (exc) {
      app.toast(exc.message);
    }
  };
  const load = async () => {
    const page = await app.session.request("orders.list", { limit: 50 });
    list.replaceChildren(...page.items.map(item));
    if (!page.items.length) list.append(h("li", { class: "muted" }, "No orders yet."));
  };
  app.listen(offs, "order.updated", (e) => {
    const o = e.data.order;
    if (o.buyer_id !== app.me.id) return;
    const row = rows.get(o.id);
    if (row) row.draw(o);
    else {
      list.querySelector(".muted")?.remove();
      list.prepend(item(o));
    }
  });
  app.listen(offs, "reset", (e) => e.stream.startsWith("user:") && load());
  mount(root, h("h2", {}, "Your orders"), list);
  await load();
  return () => offs.forEach((off) => off());
}
