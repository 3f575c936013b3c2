// Hyperlocal protocol client: the REST API and one websocket session per tab.
//
// A standalone ES module with no dependencies (docs/web.md documents its API; the contract it
// speaks is docs/protocol.md). Two classes:
//
//   Rest     JSON over fetch with the Bearer token; refreshes it once on a 401 (one refresh at a
//            time across every tab of the origin, through the Web Locks API: a refresh token is
//            single use, and a second tab presenting the spent one would end the sign-in).
//   Session  the websocket: a ticket from POST /api/v1/auth/ws-ticket, the hello frame, requests
//            by id, replies matched, idempotency keys for mutating ops, events by name. When the
//            socket drops for any reason but the do-not-reconnect range (4000-4099) it reconnects
//            with exponential backoff and jitter, locates again, and resumes every stream it
//            followed with `subscribe {stream, since}`: missed events are delivered in order,
//            duplicates (by offset) dropped; `recovered: false` emits "reset" for that stream so
//            its view reloads. Requests made while disconnected wait and are sent (mutating ones
//            with their same key) once the session is back. A close in 4000-4099 (suspended,
//            signed out, protocol error) emits "signedout" with the code and reason, no reconnect.
//
// Errors are ApiError {code, message, status, details}: the server's typed error, or
// `network` / `timeout` / `closed` raised here.

export class ApiError extends Error {
  constructor(code, message, status = 0, details = undefined) {
    super(message || code);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/** A fresh idempotency key. */
export function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return `k-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** Tokens kept in localStorage under one key, so a reload (and other tabs) stay signed in. */
export class TokenStore {
  constructor(storage = globalThis.localStorage, name = "hl.auth") {
    this.storage = storage;
    this.name = name;
  }
  get() {
    try {
      return JSON.parse(this.storage.getItem(this.name) || "null");
    } catch {
      return null;
    }
  }
  set(value) {
    if (value) this.storage.setItem(this.name, JSON.stringify(value));
    else this.storage.removeItem(this.name);
  }
}

export class Rest {
  /**
   * @param {object} opts
   * @param {string} [opts.base] the gateway's origin (default: this page's)
   * @param {TokenStore} [opts.tokens]
   * @param {(reason: string) => void} [opts.onSignedOut] called when the sign-in is gone
   */
  constructor({ base = globalThis.location?.origin ?? "", tokens = new TokenStore(), onSignedOut } = {}) {
    this.base = base.replace(/\/$/, "");
    this.tokens = tokens;
    this.onSignedOut = onSignedOut || (() => {});
    this._refreshing = null;
  }

  get signedIn() {
    return Boolean(this.tokens.get()?.access_token);
  }

  /** Any call: `method`, `path` (/api/v1/...), a JSON `body` or a FormData. Resolves to the
   * parsed answer (null for 204), rejects with ApiError. */
  async call(method, path, body = undefined, { auth = true, headers = {} } = {}) {
    const send = async () => {
      const h = { ...headers };
      const tok = this.tokens.get();
      if (auth && tok?.access_token) h.Authorization = `Bearer ${tok.access_token}`;
      let payload;
      if (body instanceof FormData) payload = body;
      else if (body !== undefined) {
        h["Content-Type"] = "application/json";
        payload = JSON.stringify(body);
      }
      let resp;
      try {
        resp = await fetch(this.base + path, { method, headers: h, body: payload });
      } catch (exc) {
        throw new ApiError("network", `network error: ${exc.message}`);
      }
      return resp;
    };
    let resp = await send();
    if (resp.status === 401 && auth && this.tokens.get()?.refresh_token) {
      const err = await readError(resp);
      if (err.code !== "unauthorized") throw err;
      await this.refresh();
      resp = await send();
    }
    if (!resp.ok) {
      const err = await readError(resp);
      if (auth && (resp.status === 401 || err.details?.reason === "suspended")) {
        this._signOut(err.details?.reason === "suspended" ? "account suspended" : err.message);
      }
      throw err;
    }
    if (resp.status === 204) return null;
    const text = await resp.text();
    return text ? JSON.parse(text) : null;
  }

  get(path) {
    return this.call("GET", path);
  }
  post(path, body, opts) {
    return this.call("POST", path, body, opts);
  }
  patch(path, body) {
    return this.call("PATCH", path, body);
  }
  put(path, body) {
    return this.call("PUT", path, body);
  }
  del(path, body) {
    return this.call("DELETE", path, body);
  }

  async signup(email, password, displayName) {
    const body = { email, password, display_name: displayName };
    return this._keep(await this.call("POST", "/api/v1/auth/signup", body, { auth: false }));
  }

  /** Rejects with code `otp_required` when the account has two-factor on: ask, call again. */
  async login(email, password, otp = undefined) {
    const body = otp ? { email, password, otp } : { email, password };
    return this._keep(await this.call("POST", "/api/v1/auth/login", body, { auth: false }));
  }

  async logout() {
    try {
      await this.call("POST", "/api/v1/auth/logout");
    } finally {
      this.tokens.set(null);
    }
  }

  /** A fresh access token; one refresh at a time across every tab (Web Locks). */
  async refresh() {
    if (!this._refreshing) {
      const had = this.tokens.get()?.refresh_token;
      const run = async () => {
        const now = this.tokens.get();
        if (!now?.refresh_token) throw new ApiError("unauthorized", "signed out", 401);
        if (now.refresh_token !== had) return; // another tab refreshed meanwhile
        const resp = await fetch(this.base + "/api/v1/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: had }),
        }).catch((exc) => {
          throw new ApiError("network", `network error: ${exc.message}`);
        });
        if (!resp.ok) {
          const err = await readError(resp);
          if (resp.status === 401 || resp.status === 403) this._signOut(err.message);
          throw err;
        }
        const fresh = await resp.json();
        this.tokens.set({ ...now, ...fresh });
      };
      const locks = globalThis.navigator?.locks;
      this._refreshing = (locks ? locks.request("hl.refresh", run) : run()).finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  _keep(answer) {
    this.tokens.set({
      access_token: answer.access_token,
      refresh_token: answer.refresh_token,
      user: answer.user,
    });
    return answer;
  }

  _signOut(reason) {
    if (!this.tokens.get()) return;
    this.tokens.set(null);
    this.onSignedOut(reason);
  }
}

async function readError(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    /* not JSON */
  }
  const e = body?.error || {};
  return new ApiError(e.code || `http_${resp.status}`, e.message || resp.statusText, resp.status, e.details);
}

/** Close codes: 4000-4099 mean "do not reconnect" (docs/protocol.md, Close codes). */
export const isFinalClose = (code) => code >= 4000 && code <= 4099;

/** A tiny event emitter: `on(name, fn)` returns a function that removes `fn`. */
class Emitter {
  constructor() {
    this._handlers = new Map();
  }
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => this._handlers.get(name)?.delete(fn);
  }
  emit(name, value) {
    for (const fn of [...(this._handlers.get(name) || [])]) {
      try {
        fn(value);
      } catch (exc) {
        console.error(`handler of ${name} failed`, exc);
      }
    }
  }
}

export class Session extends Emitter {
  /**
   * @param {Rest} rest signed in; its token buys the websocket tickets
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs] a request without a reply by then rejects with `timeout`
   * @param {number} [opts.backoffMs] first reconnect delay, doubled up to `maxBackoffMs`
   *
   * Events (`session.on(name, fn)`): "status" ("connecting" | "open" | "reconnecting" |
   * "closed"), "hello" {user_id, session_id}, "event" (every stream event, in order, once),
   * every event by its own name ("post.created", "chat.message", ...), "reset" {stream, epoch,
   * offset} (a gap the server could not fill: reload that view), "signedout" {code, reason}.
   */
  constructor(rest, { timeoutMs = 15000, backoffMs = 500, maxBackoffMs = 15000 } = {}) {
    super();
    this.rest = rest;
    this.timeoutMs = timeoutMs;
    this.backoffMs = backoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.ws = null;
    this.status = "closed";
    this.hello = null;
    this.location = null; // {lat, lng} of the last locate, repeated after a reconnect
    this.located = null; // its reply
    this.positions = new Map(); // stream -> {epoch, offset} of the last event delivered
    this.followed = new Set(); // streams subscribed explicitly (resumed after a reconnect)
    this._resuming = new Map(); // stream -> events held while its subscribe is in flight
    this._pending = new Map(); // id -> {frame, resolve, reject, timer}
    this._queue = []; // frames waiting for the socket
    this._ids = 1;
    this._attempt = 0;
    this._stopped = true;
    this._timer = null;
  }

  /** Open the session; resolves with the hello data (rejects if the first attempt fails for
   * a reason that does not retry, e.g. signed out). */
  start() {
    this._stopped = false;
    return new Promise((resolve, reject) => {
      const offHello = this.on("hello", (h) => {
        offHello();
        offOut();
        resolve(h);
      });
      const offOut = this.on("signedout", (s) => {
        offHello();
        offOut();
        reject(new ApiError("unauthorized", s.reason));
      });
      this._open();
    });
  }

  /** Close for good (sign-out, page leaving); pending requests reject with `closed`. */
  stop() {
    this._stopped = true;
    clearTimeout(this._timer);
    if (this.ws) this.ws.close(1000, "bye");
    this._fail(new ApiError("closed", "session closed"));
    this._setStatus("closed");
  }

  /** Send `op` and resolve with its reply's data; reject with ApiError. Mutating ops need a
   * `key` (use `mutate`). */
  request(op, data = {}, { key = undefined, timeoutMs = this.timeoutMs } = {}) {
    const id = this._ids++;
    const frame = { id, op, data };
    if (key !== undefined) frame.key = key;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ApiError("timeout", `${op}: no reply in ${timeoutMs} ms`));
      }, timeoutMs);
      this._pending.set(id, { frame, resolve, reject, timer, sent: false });
      this._send(id);
    });
  }

  /** A mutating op with a fresh idempotency key (the same key is reused if it must be re-sent
   * after a reconnect, so it takes effect once). */
  mutate(op, data = {}, opts = {}) {
    return this.request(op, data, { ...opts, key: opts.key ?? newKey() });
  }

  /** `locate` and remember it: after a reconnect the session locates again. */
  async locate(lat, lng) {
    const reply = await this.request("locate", { lat, lng });
    this.location = { lat, lng };
    this.located = reply;
    for (const [stream, pos] of Object.entries(reply.positions || {})) this.positions.set(stream, pos);
    for (const stream of [...this.positions.keys()]) {
      if (isLocationStream(stream) && !reply.streams.includes(stream)) this.positions.delete(stream);
    }
    return reply;
  }

  /** Follow `stream` (a room, a listing) now and after every reconnect. */
  async subscribe(stream) {
    this.followed.add(stream);
    return this._resume(stream, this.positions.get(stream));
  }

  async unsubscribe(stream) {
    this.followed.delete(stream);
    this.positions.delete(stream);
    return this.request("unsubscribe", { stream });
  }

  // -- the socket -----------------------------------------------------------------------------
  async _open() {
    clearTimeout(this._timer);
    this._setStatus(this._attempt ? "reconnecting" : "connecting");
    let ticket;
    try {
      ticket = (await this.rest.post("/api/v1/auth/ws-ticket")).ticket;
    } catch (exc) {
      if (exc.status === 401 || exc.status === 403) return this._signedOut(4004, exc.message);
      return this._retry();
    }
    if (this._stopped) return;
    const scheme = this.rest.base.startsWith("https") ? "wss" : "ws";
    const host = this.rest.base.replace(/^https?:\/\//, "") || location.host;
    const ws = new WebSocket(`${scheme}://${host}/ws?ticket=${encodeURIComponent(ticket)}`, "hl.json");
    this.ws = ws;
    ws.onmessage = (m) => this._frame(JSON.parse(m.data));
    ws.onclose = (e) => this._closed(ws, e.code, e.reason);
    ws.onerror = () => {}; // the close event follows and decides
  }

  _closed(ws, code, reason) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.hello = null;
    for (const [id, p] of this._pending) {
      if (!p.direct) {
        p.sent = false; // re-sent after the reconnect
        continue;
      }
      clearTimeout(p.timer); // a resume step of this socket: the next socket resumes anew
      this._pending.delete(id);
      p.reject(new ApiError("closed", "the socket closed"));
    }
    if (this._stopped) return;
    if (isFinalClose(code)) return this._signedOut(code, reason);
    this._retry();
  }

  _retry() {
    if (this._stopped) return;
    this._setStatus("reconnecting");
    const base = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** this._attempt);
    this._attempt += 1;
    this._timer = setTimeout(() => this._open(), base / 2 + Math.random() * (base / 2));
  }

  _signedOut(code, reason) {
    this._stopped = true;
    this._fail(new ApiError("unauthorized", reason || "signed out"));
    this._setStatus("closed");
    this.emit("signedout", { code, reason: reason || closeReason(code) });
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", status);
  }

  _fail(error) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(error);
      this._pending.delete(id);
    }
  }

  _send(id) {
    const p = this._pending.get(id);
    if (!p || p.sent || !this.hello || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    p.sent = true;
    this.ws.send(JSON.stringify(p.frame));
  }

  _frame(frame) {
    if (frame.ev === "hello") return this._hello(frame.data);
    if ("re" in frame) {
      const p = this._pending.get(frame.re);
      if (!p) return;
      this._pending.delete(frame.re);
      clearTimeout(p.timer);
      if (frame.ok) p.resolve(frame.data);
      else p.reject(new ApiError(frame.error.code, frame.error.message, 0, frame.error.details));
      return;
    }
    if (frame.ev) this._event(frame);
  }

  async _hello(data) {
    const reconnect = this._attempt > 0 || this.positions.size > 0;
    this.hello = data;
    this._attempt = 0;
    const inbox = `user:${data.user_id}`;
    if (!reconnect) {
      this._setStatus("open");
      this.emit("hello", data);
      for (const id of this._pending.keys()) this._send(id);
      return;
    }
    // Resume: locate first (a neighbourhood room needs it), then every stream from where it was.
    // Requests made meanwhile wait until the streams are resumed, so a view sees its state first.
    const waiting = [...this._pending.keys()];
    const ws = this.ws;
    try {
      if (this.location) {
        const frame = { id: this._ids++, op: "locate", data: this.location };
        const reply = await this._direct(frame);
        this.located = reply;
      }
      const streams = new Set([inbox, ...this.followed]);
      for (const s of this.located?.streams || []) streams.add(s);
      await Promise.all([...streams].map((s) => this._resume(s, this.positions.get(s), true)));
    } catch (exc) {
      if (this.ws !== ws) return; // that socket is gone; its successor resumes
      console.warn("resuming the session failed; reconnecting", exc);
      ws.close(4101, "resume failed");
      return;
    }
    if (this.ws !== ws) return;
    this._setStatus("open");
    this.emit("hello", data);
    for (const id of waiting) this._send(id);
    for (const id of this._pending.keys()) this._send(id);
  }

  /** A request sent at once (during the resume, before queued requests). */
  _direct(frame) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(frame.id);
        reject(new ApiError("timeout", `${frame.op}: no reply in ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this._pending.set(frame.id, { frame, resolve, reject, timer, sent: true, direct: true });
      this.ws.send(JSON.stringify(frame));
    });
  }

  async _resume(stream, since, direct = false) {
    this._resuming.set(stream, []);
    const data = since ? { stream, since } : { stream };
    let reply;
    try {
      reply = direct
        ? await this._direct({ id: this._ids++, op: "subscribe", data })
        : await this.request("subscribe", data);
    } catch (exc) {
      const held = this._resuming.get(stream) || [];
      this._resuming.delete(stream);
      for (const frame of held) this._deliver(frame);
      throw exc;
    }
    const held = this._resuming.get(stream) || [];
    this._resuming.delete(stream);
    if (reply.recovered) {
      if (!since) this.positions.set(stream, { epoch: reply.epoch, offset: reply.offset });
      for (const frame of reply.events) this._deliver(frame);
    } else {
      this.positions.set(stream, { epoch: reply.epoch, offset: reply.offset });
      this.emit("reset", { stream, epoch: reply.epoch, offset: reply.offset });
    }
    for (const frame of held) this._deliver(frame);
    return reply;
  }

  _event(frame) {
    const held = frame.stream && this._resuming.get(frame.stream);
    if (held && frame.offset !== undefined) held.push(frame);
    else this._deliver(frame);
  }

  /** Deliver a stream event once, in order (an offset at or below the last one seen is a
   * duplicate of a replay and is dropped). Ephemeral events (no offset) pass straight. */
  _deliver(frame) {
    if (frame.offset !== undefined && frame.stream) {
      const pos = this.positions.get(frame.stream);
      if (pos && pos.epoch === frame.epoch && frame.offset <= pos.offset) return;
      this.positions.set(frame.stream, { epoch: frame.epoch, offset: frame.offset });
    }
    this.emit("event", frame);
    this.emit(frame.ev, frame);
  }
}

const isLocationStream = (s) => s.startsWith("feed:") || s.startsWith("room:cell-");

export function closeReason(code) {
  return (
    {
      4002: "protocol error",
      4003: "your account is suspended",
      4004: "you were signed out",
    }[code] || `connection closed (${code})`
  );
}
