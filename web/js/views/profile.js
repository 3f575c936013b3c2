// A profile: picture, name, bio, counts, follow / unfollow, a direct chat; your own is editable
// (a new picture is uploaded through the media API, then set with profile.update).
import { field, form, h, mount } from "../dom.js";

export async function render(app, root, { args }) {
  const id = args[0] || app.me.id;
  const { user } = await app.session.request("user.get", { user_id: id });
  const mine = id === app.me.id;
  const avatar = h("input", { name: "avatar", type: "file", accept: "image/jpeg,image/png,image/webp" });
  const picture = h("img", { src: user.avatar_url || undefined, alt: `${user.display_name}'s picture`, width: 96, height: 96, class: "avatar", hidden: !user.avatar_url });
  const counts = h("p", { class: "muted" });
  const drawCounts = () => (counts.textContent = `${user.followers} followers · ${user.following} following · ${user.posts} posts`);
  drawCounts();
  let following = false;
  const followBtn = h("button", { type: "button", class: "primary", "aria-pressed": "false" }, "Follow");
  followBtn.addEventListener("click", async () => {
    const r = await app.session.mutate(following ? "user.unfollow" : "user.follow", { user_id: id });
    user.followers += r.following === following ? 0 : r.following ? 1 : -1;
    following = r.following;
    followBtn.textContent = following ? "Unfollow" : "Follow";
    followBtn.setAttribute("aria-pressed", String(following));
    drawCounts();
  });
  if (!mine) {
    const theirs = await app.session.request("user.followers", { user_id: id, limit: 100 }).catch(() => ({ items: [] }));
    following = theirs.items.some((u) => u.id === app.me.id);
    followBtn.textContent = following ? "Unfollow" : "Follow";
    followBtn.setAttribute("aria-pressed", String(following));
  }
  const chat = async () => {
    const { room } = await app.session.request("chat.open", { user_id: id });
    location.hash = `#/chat/${encodeURIComponent(room.id)}`;
  };
  mount(
    root,
    h("section", { class: "card", "aria-labelledby": "p-name" },
      picture,
      h("h2", { id: "p-name" }, user.display_name),
      user.vendor ? h("p", {}, `Vendor: ${user.vendor.name} (${user.vendor.category})`) : null,
      user.bio ? h("p", {}, user.bio) : null,
      counts,
      mine ? null : h("div", { class: "row" }, followBtn, h("button", { type: "button", onclick: chat }, "Message")),
    ),
    mine
      ? form({ class: "card", "aria-label": "Edit your profile" }, [
          h("h3", {}, "Edit your profile"),
          field("Display name", h("input", { name: "display_name", value: user.display_name, required: true, maxlength: 100 })),
          field("Bio", h("textarea", { name: "bio", rows: 3, maxlength: 500 }, user.bio || "")),
          field("Profile picture", avatar),
          h("button", { type: "submit" }, "Save"),
        ], async (v) => {
          const change = { display_name: v.display_name, bio: v.bio };
          if (avatar.files.length) {
            const upload = new FormData();
            upload.append("file", avatar.files[0]);
            change.avatar_media_id = (await app.rest.post("/api/v1/media", upload)).media.id;
          }
          const r = await app.session.mutate("profile.update", change);
          if (r.user.avatar_url) picture.src = r.user.avatar_url;
          picture.hidden = !r.user.avatar_url;
          app.me.display_name = r.user.display_name;
          app.renderChrome();
          app.toast("Saved");
        })
      : null,
  );
}
