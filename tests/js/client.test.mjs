// Unit tests of web/js/client.js's Session under node's test runner, over a fake WebSocket and
// a fake Rest (run by tests/unit/test_client_js.py). What the browser tests cannot easily
// provoke: recovered:false, duplicates in a replay, a resume's order, the do-not-reconnect range.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Session, isFinalClose } from "../../web/js/client.js";

const sockets = [];
class FakeSocket {
  static OPEN = 1;
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = 1;
    this.sent = [];
    sockets.push(this);
    queueMicrotask(() => this.server({ ev: "hello", data: { user_id: "u1", session_id: "s1" } }));
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000, reason = "") {
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }
  server(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  reply(op, data, ok = true) {
    const frame = [...this.sent].reverse().find((f) => f.op === op);
    this.server(ok ? { re: frame.id, ok: true, data } : { re: frame.id, ok: false, error: data });
    return frame;
  }
}
globalThis.WebSocket = FakeSocket;
const rest = { base: "http://gw.test", post: async () => ({ ticket: "t-1" }) };
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
const until = async (check) => {
  for (let i = 0; i < 200 && !check(); i++) await tick(2);
  assert.ok(check(), "condition never held");
};

async function located() {
  sockets.length = 0;
  const s = new Session(rest, { backoffMs: 1, maxBackoffMs: 4, timeoutMs: 2000 });
  await s.start();
  const ws = sockets[0];
  assert.equal(ws.url, "ws://gw.test/ws?ticket=t-1");
  assert.equal(ws.protocol, "hl.json");
  const where = s.locate(1, 2);
  await until(() => ws.sent.length);
  ws.reply("locate", { cell: "c", cells: ["c"], streams: ["feed:c"], positions: { "feed:c": { epoch: "e", offset: 5 } } });
  await where;
  return { s, ws };
}

test("requests match replies; mutate sends a key; errors are typed", async () => {
  const { s, ws } = await located();
  const a = s.mutate("post.create", { text: "hi" });
  const b = s.request("feed.get", {});
  await until(() => ws.sent.length === 3);
  assert.ok(ws.sent[1].key, "a mutating op carries a key");
  ws.reply("feed.get", { code: "bad_request", message: "no" }, false);
  ws.reply("post.create", { post: { id: "p" } });
  assert.deepEqual(await a, { post: { id: "p" } });
  await assert.rejects(b, (e) => e.code === "bad_request");
  s.stop();
});

test("events are delivered once, in order; a replay after a reconnect fills the gap", async () => {
  const { s, ws } = await located();
  const seen = [];
  s.on("post.created", (e) => seen.push(e.offset));
  ws.server({ ev: "post.created", stream: "feed:c", epoch: "e", offset: 6, data: {} });
  ws.server({ ev: "post.created", stream: "feed:c", epoch: "e", offset: 6, data: {} }); // duplicate
  const pending = s.mutate("post.create", { text: "while away" });
  await until(() => ws.sent.length === 2);
  const key = ws.sent[1].key;
  ws.close(4101, "restart");
  await until(() => sockets.length === 2);
  const ws2 = sockets[1];
  await until(() => ws2.sent.some((f) => f.op === "locate"));
  ws2.reply("locate", { cell: "c", cells: ["c"], streams: ["feed:c"], positions: {} });
  await until(() => ws2.sent.filter((f) => f.op === "subscribe").length === 2);
  const feed = ws2.sent.find((f) => f.op === "subscribe" && f.data.stream === "feed:c");
  assert.deepEqual(feed.data.since, { epoch: "e", offset: 6 });
  ws2.server({ ev: "post.created", stream: "feed:c", epoch: "e", offset: 9, data: {} }); // live, held
  ws2.server({ re: feed.id, ok: true, data: { recovered: true, epoch: "e", offset: 8, events: [7, 8].map((o) => ({ ev: "post.created", stream: "feed:c", epoch: "e", offset: o, data: {} })) } });
  const inbox = ws2.sent.find((f) => f.data.stream === "user:u1");
  ws2.server({ re: inbox.id, ok: true, data: { recovered: true, epoch: "i", offset: 0, events: [] } });
  await until(() => ws2.sent.some((f) => f.op === "post.create"));
  assert.equal(ws2.sent.find((f) => f.op === "post.create").key, key, "re-sent with its key");
  ws2.reply("post.create", { post: { id: "p2" } });
  await pending;
  assert.deepEqual(seen, [6, 7, 8, 9]);
  assert.equal(s.status, "open");
  s.stop();
});

test("recovered: false emits reset for that stream", async () => {
  const { s, ws } = await located();
  const resets = [];
  s.on("reset", (r) => resets.push(r));
  ws.close(1006);
  await until(() => sockets.length === 2);
  const ws2 = sockets[1];
  await until(() => ws2.sent.some((f) => f.op === "locate"));
  ws2.reply("locate", { cell: "c", cells: ["c"], streams: ["feed:c"], positions: {} });
  await until(() => ws2.sent.filter((f) => f.op === "subscribe").length === 2);
  for (const f of ws2.sent.filter((x) => x.op === "subscribe")) {
    ws2.server({ re: f.id, ok: true, data: { recovered: f.data.stream !== "feed:c", epoch: "e2", offset: 40, events: [] } });
  }
  await until(() => s.status === "open");
  assert.deepEqual(resets, [{ stream: "feed:c", epoch: "e2", offset: 40 }]);
  assert.deepEqual(s.positions.get("feed:c"), { epoch: "e2", offset: 40 });
  s.stop();
});

test("a close in 4000-4099 signs out and does not reconnect", async () => {
  const { s, ws } = await located();
  const out = [];
  s.on("signedout", (x) => out.push(x));
  const pending = s.request("feed.get", {});
  ws.close(4003, "account suspended");
  await assert.rejects(pending, (e) => e.code === "unauthorized");
  await tick(30);
  assert.equal(sockets.length, 1, "no second socket");
  assert.deepEqual(out, [{ code: 4003, reason: "account suspended" }]);
  assert.ok(isFinalClose(4004) && !isFinalClose(4100) && !isFinalClose(1006));
});
