// The neighbourhood: locate (browser geolocation, or a spot picked on the map or typed), the
// map of H3 cells, and the live feed (post with a photo, comment, like, report). Feed events of
// the followed cells update the list in place; a stream reset reloads it.
import { field, form, h, mount, time } from "../dom.js";
import { neighbourhoodMap } from "../map.js";

export async function render(app, root) {
  if (!app.location || !app.session?.located) return locatePanel(app, root);
  const offs = [];
  const located = app.session.located;
  const streams = new Set(located.streams);
  const posts = new Map(); // id -> {post, el, refresh}
  const list = h("ol", { class: "posts", "aria-label": "Posts near you", "aria-live": "polite" });
  let sort = "newest";
  let next = null;

  const map = neighbourhoodMap({
    cell: located.cell,
    cells: located.cells,
    at: app.location,
    onpick: (lat, lng) => relocate(app, lat, lng),
  });
  const replot = () => map.plot([...posts.values()].filter((p) => p.post.lat != null).map((p) => ({ lat: p.post.lat, lng: p.post.lng, label: p.post.text.slice(0, 40) })));

  const add = (post, top) => {
    if (posts.has(post.id)) return posts.get(post.id).refresh(post);
    const item = postItem(app, post);
    posts.set(post.id, item);
    if (top) list.prepend(item.el);
    else list.append(item.el);
    replot();
  };
  const more = h("button", { type: "button", hidden: true, onclick: () => load(false) }, "Older posts");
  const load = async (fresh) => {
    const data = { sort, limit: 20 };
    if (!fresh && next) data.cursor = next;
    if (sort !== "following") Object.assign(data, app.location);
    const page = await app.session.request("feed.get", data);
    if (fresh) {
      posts.clear();
      list.replaceChildren();
    }
    for (const p of page.items) add(p, false);
    next = page.next_cursor;
    more.hidden = !next;
    if (!page.items.length && fresh) list.append(h("li", { class: "muted empty" }, "Nothing here yet: be the first to post."));
  };

  const photo = h("input", { name: "photo", type: "file", accept: "image/jpeg,image/png,image/webp" });
  const composer = form(
    { class: "card composer", "aria-label": "New post" },
    [
      field("Write a post", h("textarea", { name: "text", rows: 3, maxlength: 2000, required: true, placeholder: "What's happening nearby?" })),
      field("Photo", photo),
      h("button", { type: "submit", class: "primary" }, "Post"),
    ],
    async (v, el) => {
      const data = { text: v.text, ...app.location };
      if (photo.files.length) {
        const body = new FormData();
        body.append("file", photo.files[0]);
        const { media } = await app.rest.post("/api/v1/media", body);
        data.media = [media.id];
      }
      const { post } = await app.session.mutate("post.create", data);
      list.querySelector(".empty")?.remove();
      add(post, true);
      el.reset();
    },
  );
  const sorter = h(
    "select",
    { name: "sort", onchange: (e) => ((sort = e.target.value), load(true)) },
    h("option", { value: "newest" }, "Newest"),
    h("option", { value: "relevance" }, "For you"),
    h("option", { value: "following" }, "People you follow"),
  );

  const ours = (e) => streams.has(e.stream);
  app.listen(offs, "post.created", (e) => {
    if (ours(e) && sort !== "following") {
      list.querySelector(".empty")?.remove();
      add(e.data.post, true);
    }
  });
  app.listen(offs, "comment.created", (e) => posts.get(e.data.comment.post_id)?.comment(e.data.comment));
  for (const ev of ["post.liked", "post.unliked"]) {
    app.listen(offs, ev, (e) => posts.get(e.data.post_id)?.likes(e.data.like_count, e.data.user_id === app.me.id ? ev === "post.liked" : undefined));
  }
  app.listen(offs, "post.removed", (e) => {
    posts.get(e.data.post_id)?.el.remove();
    posts.delete(e.data.post_id);
    replot();
  });
  app.listen(offs, "reset", (e) => streams.has(e.stream) && load(true));

  mount(
    root,
    h(
      "section",
      { class: "neighbourhood", "aria-labelledby": "nb-title" },
      h("h2", { id: "nb-title" }, "Your neighbourhood"),
      map.el,
      h("p", { class: "muted" }, `${located.cells.length} cells around you · click the map to move`, " ", h("button", { type: "button", class: "link", onclick: () => geolocate(app) }, "Use my location")),
    ),
    composer,
    h("section", { "aria-labelledby": "feed-title" }, h("div", { class: "row" }, h("h2", { id: "feed-title" }, "Feed"), field("Sort", sorter)), list, more),
  );
  await load(true);
  return () => offs.forEach((off) => off());
}

function postItem(app, post) {
  let liked = false;
  const likeBtn = h("button", { type: "button", "aria-pressed": "false", class: "like" });
  const commentsBtn = h("button", { type: "button", "aria-expanded": "false" });
  const comments = h("ol", { class: "comments", hidden: true, "aria-label": "Comments" });
  const text = h("p", { class: "text" }, post.text);
  const el = h(
    "li",
    { class: "post card", dataset: { id: post.id } },
    h("article", { "aria-label": `Post: ${post.text.slice(0, 60)}` },
      h("header", {}, app.name(post.author_id), " · ", time(post.created_at)),
      text,
      (post.media || []).map((id) => h("img", { src: `/media/${id}/1024.webp`, alt: "photo of the post", loading: "lazy" })),
      h("footer", {}, likeBtn, commentsBtn, h("button", { type: "button", class: "link", onclick: () => report(app, post) }, "Report")),
      comments,
    ),
  );
  const draw = () => {
    likeBtn.textContent = `${liked ? "♥ Liked" : "♡ Like"} (${post.like_count})`;
    likeBtn.setAttribute("aria-pressed", String(liked));
    likeBtn.setAttribute("aria-label", `${liked ? "Unlike" : "Like"} post, ${post.like_count} likes`);
    commentsBtn.textContent = `Comments (${post.comment_count})`;
  };
  likeBtn.addEventListener("click", async () => {
    const r = await app.session.mutate(liked ? "post.unlike" : "post.like", { post_id: post.id });
    liked = r.liked;
    post.like_count = r.like_count;
    draw();
  });
  const showComment = (c) => {
    if (comments.querySelector(`[data-id="${CSS.escape(c.id)}"]`)) return;
    comments.querySelector("form")?.before(h("li", { dataset: { id: c.id } }, app.name(c.author_id), ": ", c.text));
  };
  commentsBtn.addEventListener("click", async () => {
    const open = comments.hidden;
    comments.hidden = !open;
    commentsBtn.setAttribute("aria-expanded", String(open));
    if (!open) return;
    const page = await app.session.request("post.get", { post_id: post.id });
    const add = form(
      { class: "inline", "aria-label": "New comment" },
      [field("Write a comment", h("input", { name: "text", required: true, maxlength: 2000 })), h("button", { type: "submit" }, "Comment")],
      async (v, f) => {
        const { comment } = await app.session.mutate("comment.create", { post_id: post.id, text: v.text });
        showComment(comment);
        f.reset();
      },
    );
    mount(comments, add);
    page.comments.forEach(showComment);
  });
  draw();
  return {
    post,
    el,
    refresh(p) {
      Object.assign(post, p);
      draw();
    },
    likes(count, mine) {
      post.like_count = count;
      if (mine !== undefined) liked = mine;
      draw();
    },
    comment(c) {
      post.comment_count += comments.querySelector(`[data-id="${CSS.escape(c.id)}"]`) ? 0 : 1;
      if (!comments.hidden) showComment(c);
      draw();
    },
  };
}

async function report(app, post) {
  try {
    await app.session.mutate("report.create", { target: { kind: "post", id: post.id }, reason: "spam" });
    app.toast("Reported to the moderators");
  } catch (exc) {
    app.toast(exc.message);
  }
}

async function relocate(app, lat, lng) {
  try {
    await app.locate(lat, lng);
    app.route();
  } catch (exc) {
    app.toast(exc.message);
  }
}

function geolocate(app) {
  if (!navigator.geolocation) return app.toast("This browser cannot tell where you are: pick a spot");
  navigator.geolocation.getCurrentPosition(
    (p) => relocate(app, Math.round(p.coords.latitude * 1e6) / 1e6, Math.round(p.coords.longitude * 1e6) / 1e6),
    (e) => app.toast(`No location: ${e.message}. Pick a spot instead.`),
    { enableHighAccuracy: false, timeout: 10000 },
  );
}

function locatePanel(app, root) {
  mount(
    root,
    h(
      "section",
      { class: "card narrow", "aria-labelledby": "loc-title" },
      h("h2", { id: "loc-title" }, "Where are you?"),
      h("p", {}, "Hyperlocal shows what happens around you: your cell of the map and its neighbours."),
      h("button", { type: "button", class: "primary", onclick: () => geolocate(app) }, "Use my location"),
      h("h3", {}, "Or pick a spot"),
      form(
        { "aria-label": "Pick a spot" },
        [
          field("Latitude", h("input", { name: "lat", type: "number", step: "any", min: -90, max: 90, required: true, value: "52.52" })),
          field("Longitude", h("input", { name: "lng", type: "number", step: "any", min: -180, max: 180, required: true, value: "13.405" })),
          h("button", { type: "submit" }, "Go there"),
        ],
        async (v) => {
          await app.locate(Number(v.lat), Number(v.lng));
          app.route();
        },
      ),
    ),
  );
}
