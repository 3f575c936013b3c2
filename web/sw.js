// The service worker: keeps the app's shell (this origin's page, modules, styles, icons) for
// offline use. The gateway replaces the version below with the digest of every web file, so a
// changed deployment installs a fresh cache and drops the old one. Network first for the shell
// (a deployment's update is seen at once), the cache when offline. The API, the websocket and
// media are never cached here: they are live data.
const VERSION = "__SHELL_VERSION__";
const CACHE = `hl-shell-${VERSION}`;
const SHELL = [
  "/",
  "/manifest.webmanifest",
  "/static/css/app.css",
  "/static/icons/icon.svg",
  "/static/icons/icon-192.png",
  "/static/js/app.js",
  "/static/js/client.js",
  "/static/js/dom.js",
  "/static/js/map.js",
  "/static/js/charts.js",
  "/static/js/views/auth.js",
  "/static/js/views/feed.js",
  "/static/js/views/chat.js",
  "/static/js/views/chat_group.js",
  "/static/js/views/market.js",
  "/static/js/views/notifications.js",
  "/static/js/views/profile.js",
  "/static/js/views/vendor.js",
  "/static/js/views/vendor_tools.js",
  "/static/js/views/vendor_sales.js",
  "/static/js/views/vendor_money.js",
  "/static/js/views/vendor_payout.js",
  "/static/js/views/admin.js",
  "/static/js/views/admin_users.js",
  "/static/js/views/admin_money.js",
  "/static/vendor/h3-js/h3-js.es.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("hl-shell-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  const shell = url.pathname === "/" || url.pathname.startsWith("/static/") || url.pathname === "/manifest.webmanifest";
  if (!shell) return; // /api, /ws, /media: always the network
  event.respondWith(
    fetch(event.request)
      .then((resp) => {
        if (resp.ok) {
          const copy = resp.clone();
          caches.open(CACHE).then((c) => c.put(url.pathname === "/" ? "/" : event.request, copy));
        }
        return resp;
      })
      .catch(() => caches.match(url.pathname === "/" ? "/" : event.request).then((r) => r || Response.error())),
  );
});

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { title: "Hyperlocal", body: event.data?.text() };
  }
  event.waitUntil(
    self.registration.showNotification(data.title || "Hyperlocal", {
      body: data.body || "",
      tag: data.id,
      data: { url: data.url || "/#/notifications" },
      icon: "/static/icons/icon-192.png",
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow(event.notification.data?.url || "/"));
});
