// The vendor dashboard: become a vendor, your listings (create with a photo, edit the title,
// description and price, stock, remove) and incoming orders (accept, fulfil, cancel), updated live by order.updated;
// webhooks, apps and disputes are in vendor_tools.js.
import { newKey } from "../client.js";
import { field, form, h, money, mount, time } from "../dom.js";
import { sections } from "./vendor_tools.js";

const idem = () => ({ headers: { "Idempotency-Key": newKey() } });

export async function render(app, root) {
  // the profile says whether the user has a shop (asking the vendor API would answer 403)
  const { user } = await app.session.request("user.get", { user_id: app.me.id });
  if (!user.vendor) return becomeVendor(app, root);
  const { vendor } = await app.rest.get("/api/v1/vendors/me");
  const offs = [];
  const listings = h("tbody");
  const orders = h("ol", { "aria-label": "Incoming orders" });
  const orderRows = new Map();

  const listingRow = (l) => {
    const stock = h("input", { name: "set", type: "number", min: 0, value: String(l.stock), "aria-label": `Stock of ${l.title}` });
    const price = h("input", { name: "price", type: "number", min: 0, value: String(l.price), "aria-label": `Price of ${l.title} in cents` });
    const title = h("span", {}, l.title);
    const editor = form({ hidden: true, "aria-label": `Edit the listing ${l.title}` }, [
      field("Listing title", h("input", { name: "title", value: l.title, required: true, maxlength: 200 })),
      field("Listing description", h("textarea", { name: "description", rows: 2, maxlength: 5000 }, l.description || "")),
      h("button", { type: "submit" }, "Save changes"),
    ], async (v) => {
      const { listing } = await app.rest.call("PATCH", `/api/v1/vendor/listings/${l.id}`, { title: v.title, description: v.description }, idem());
      title.textContent = listing.title;
      editor.hidden = true;
      app.toast("Listing saved");
    });
    const tr = h("tr", { dataset: { id: l.id } },
      h("td", {}, title, h("div", { class: "muted" }, l.category), editor),
      h("td", {}, form({ class: "inline", "aria-label": `Change the price of ${l.title}` }, [price, h("button", { type: "submit", "aria-label": `Save price of ${l.title}` }, "Save")], async (v) => {
        await app.rest.call("PATCH", `/api/v1/vendor/listings/${l.id}`, { price: Number(v.price) }, idem());
        app.toast("Price saved");
      })),
      h("td", {}, form({ class: "inline", "aria-label": `Change the stock of ${l.title}` }, [stock, h("button", { type: "submit", "aria-label": `Set stock of ${l.title}` }, "Set")], async (v) => {
        await app.rest.call("POST", `/api/v1/vendor/listings/${l.id}/stock`, { set: Number(v.set) }, idem());
        app.toast("Stock saved");
      })),
      h("td", {}, h("button", { type: "button", "aria-label": `Edit ${l.title}`, "aria-expanded": "false", onclick: (e) => {
        editor.hidden = !editor.hidden;
        e.target.setAttribute("aria-expanded", String(!editor.hidden));
      } }, "Edit"), h("button", { type: "button", "aria-label": `Remove ${l.title}`, onclick: async () => {
        await app.rest.call("DELETE", `/api/v1/vendor/listings/${l.id}`, undefined, idem());
        tr.remove();
      } }, "Remove")));
    return tr;
  };
  const orderItem = (o) => {
    const pill = h("span", { class: "status-pill", role: "status" });
    const actions = h("div", { class: "row" });
    const el = h("li", { class: "card", dataset: { id: o.id } },
      h("div", { class: "row" }, h("strong", {}, o.items.map((i) => `${i.qty} × ${i.title}`).join(", ")), pill),
      h("p", { class: "muted" }, money(o.total, o.currency), " · ", time(o.created_at)),
      actions);
    const act = (action) => async () => {
      try {
        draw((await app.rest.call("POST", `/api/v1/vendor/orders/${o.id}/${action}`, undefined, idem())).order);
      } catch (exc) {
        app.toast(exc.message);
      }
    };
    const draw = (x) => {
      pill.textContent = x.status.replace("_", " ");
      pill.dataset.status = x.status;
      mount(actions,
        x.status === "paid" ? h("button", { type: "button", class: "primary", onclick: act("accept") }, "Accept order") : null,
        x.status === "accepted" ? h("button", { type: "button", class: "primary", onclick: act("fulfil") }, "Mark fulfilled") : null,
        ["paid", "accepted"].includes(x.status) ? h("button", { type: "button", onclick: act("cancel") }, "Cancel order") : null,
        h("button", { type: "button", onclick: async () => {
          const { room } = await app.session.request("chat.open", { order_id: x.id });
          location.hash = `#/chat/${encodeURIComponent(room.id)}`;
        } }, "Message buyer"));
    };
    draw(o);
    orderRows.set(o.id, draw);
    return el;
  };
  const load = async () => {
    const [ls, os] = await Promise.all([app.rest.get("/api/v1/vendor/listings?limit=100"), app.rest.get("/api/v1/vendor/orders?limit=50")]);
    listings.replaceChildren(...ls.items.map(listingRow));
    orders.replaceChildren(...os.items.map(orderItem));
    if (!os.items.length) orders.append(h("li", { class: "muted" }, "No orders yet."));
  };
  app.listen(offs, "order.updated", (e) => {
    const o = e.data.order;
    if (o.vendor_id !== vendor.id) return;
    const draw = orderRows.get(o.id);
    if (draw) draw(o);
    else {
      orders.querySelector(".muted")?.remove();
      orders.prepend(orderItem(o));
    }
  });
  app.listen(offs, "reset", (e) => e.stream.startsWith("user:") && load());

  const photo = h("input", { name: "photo", type: "file", accept: "image/jpeg,image/png,image/webp" });
  const create = form(
    { class: "card", "aria-label": "New listing" },
    [
      h("h3", {}, "New listing"),
      field("Title", h("input", { name: "title", required: true, maxlength: 200 })),
      field("Description", h("textarea", { name: "description", rows: 2, maxlength: 5000 })),
      h("div", { class: "row" },
        field("Category", h("input", { name: "category", required: true, value: vendor.category })),
        field("Price (cents)", h("input", { name: "price", type: "number", min: 0, required: true })),
        field("Stock", h("input", { name: "stock", type: "number", min: 0, value: "1", required: true })),
        field("Kind", h("select", { name: "kind" }, h("option", { value: "product" }, "product"), h("option", { value: "service" }, "service")))),
      field("Listing photo", photo),
      h("button", { type: "submit", class: "primary" }, "Create listing"),
    ],
    async (v, el) => {
      const body = { title: v.title, description: v.description, category: v.category, price: Number(v.price), stock: Number(v.stock), kind: v.kind };
      if (photo.files.length) {
        const upload = new FormData();
        upload.append("file", photo.files[0]);
        body.images = [(await app.rest.post("/api/v1/media", upload)).media.id];
      }
      const { listing } = await app.rest.call("POST", "/api/v1/vendor/listings", body, idem());
      listings.prepend(listingRow(listing));
      el.reset();
      app.toast("Listing created");
    },
  );
  mount(
    root,
    h("h2", {}, `Your shop: ${vendor.name}`),
    create,
    h("section", { class: "card", "aria-labelledby": "ls-title" }, h("h3", { id: "ls-title" }, "Listings"),
      h("table", { "aria-labelledby": "ls-title" }, h("thead", {}, h("tr", {}, h("th", {}, "Listing"), h("th", {}, "Price (cents)"), h("th", {}, "Stock"), h("th", {}, h("span", { class: "muted" }, "Actions")))), listings)),
    h("section", { "aria-labelledby": "or-title" }, h("h3", { id: "or-title" }, "Incoming orders"), orders),
    sections(app),
  );
  await load();
  return () => offs.forEach((off) => off());
}

function becomeVendor(app, root) {
  const at = app.location;
  mount(
    root,
    form(
      { class: "card narrow", "aria-label": "Become a vendor" },
      [
        h("h2", {}, "Sell in your neighbourhood"),
        at ? null : h("p", { class: "error" }, "Set your location on the feed first: your shop is placed there."),
        field("Shop name", h("input", { name: "name", required: true, maxlength: 100 })),
        field("Category", h("input", { name: "category", required: true, placeholder: "bakery, repairs…" })),
        h("button", { type: "submit", class: "primary", disabled: !at }, "Open my shop"),
      ],
      async (v) => {
        await app.rest.call("POST", "/api/v1/vendors", { name: v.name, category: v.category, ...app.location }, idem());
        app.route();
      },
    ),
  );
}
