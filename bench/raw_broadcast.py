"""The baseline: a raw in-process aiohttp websocket broadcast server.

It speaks just enough of the client protocol for bench/loadgen.py to drive it exactly like the
real gateway — ``POST /api/v1/auth/signup`` (any body, a fake token back), ``GET /ws`` (any
Bearer, a ``hello`` frame), ``locate`` (H3 cell and k-ring, the same geometry) and
``post.create`` (the ``post.created`` event, encoded once, written to every socket following the
post's cell, then the ack), and the chat frames of bench/chat_workload.py — ``room.create
{title, members}`` (after ``locate``), ``subscribe {stream: "room:<id>"}`` (members only) and
``chat.send {room_id, text}`` (the ``chat.message`` event, encoded once, written to every socket
subscribed to the room, then the ack with the message) — and nothing else: no auth, no
durability, no Redis, no Ray, one process. What Hyperlocal does on top (argon2/JWT, group
commit to Postgres, the event log, Redis fanout, per-socket queues) is
the difference the benchmark measures. The fanout benchmarks start it like the real stack,
pinned to the server's CPU (bench/runner.py, per core by default), so ours/raw compares one core
with one core.

    python -m bench.raw_broadcast --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import time
from collections import defaultdict
from typing import Any

import h3
from aiohttp import WSMsgType, web

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Broadcaster:
    """Sockets by followed cell, and a per-cell offset so frames look like the real ones."""

    def __init__(self, resolution: int, k_ring: int) -> None:
        self.resolution = resolution
        self.k_ring = k_ring
        self.followers: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self.offsets: dict[str, int] = defaultdict(int)
        self.ids = itertools.count(1)
        self.rooms: dict[str, dict[str, Any]] = {}
        self.room_sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)

    def locate(self, ws: web.WebSocketResponse, old: list[str], lat: float, lng: float) -> dict:
        cell = h3.latlng_to_cell(lat, lng, self.resolution)
        cells = [cell, *sorted(set(h3.grid_disk(cell, self.k_ring)) - {cell})]
        for stale in old:
            self.followers[stale].discard(ws)
        for near in cells:
            self.followers[near].add(ws)
        return {"cell": cell, "cells": cells, "streams": [f"feed:{c}" for c in cells]}

    def leave(self, ws: web.WebSocketResponse, cells: list[str]) -> None:
        for cell in cells:
            self.followers[cell].discard(ws)

    async def post(self, user: str, where: dict[str, Any], text: str) -> dict[str, Any]:
        cell = where["cell"]
        now = time.time_ns() // 1_000_000
        post = {
            "id": f"{cell}-{next(self.ids)}",
            "cell": cell,
            "author_id": user,
            "text": text,
            "lat": where["lat"],
            "lng": where["lng"],
            "media": [],
            "like_count": 0,
            "comment_count": 0,
            "created_ms": now,
        }
        self.offsets[cell] += 1
        frame = {
            "ev": "post.created",
            "stream": f"feed:{cell}",
            "epoch": "raw",
            "offset": self.offsets[cell],
            "data": {"post": post},
        }
        encoded = _DUMPS(frame)
        for ws in list(self.followers[cell]):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(encoded)
        return {"post": post}

    def room_create(self, user: str, where: dict[str, Any], data: dict[str, Any]) -> dict:
        room_id = f"{where['cell']}.raw{next(self.ids)}"
        room = {
            "id": room_id,
            "kind": "group",
            "cell": where["cell"],
            "title": data["title"],
            "members": sorted({user, *data["members"]}),
            "created_by": user,
            "created_at": time.time_ns() // 1_000_000,
        }
        self.rooms[room_id] = room | {"member_set": set(room["members"])}
        return {"room": room}

    def member_room(self, user: str, room_id: str) -> str | None:
        """The room id if ``user`` is a member, else None (the real gateway's access check)."""
        room = self.rooms.get(room_id)
        return room_id if room is not None and user in room["member_set"] else None

    def subscribe(self, ws: web.WebSocketResponse, user: str, stream: str) -> dict | None:
        room_id = self.member_room(user, stream.removeprefix("room:"))
        if room_id is None:
            return None
        self.room_sockets[room_id].add(ws)
        return {"recovered": False, "epoch": "raw", "offset": self.offsets[stream]}

    def unsubscribe_all(self, ws: web.WebSocketResponse, rooms: list[str]) -> None:
        for room_id in rooms:
            self.room_sockets[room_id].discard(ws)

    async def chat_send(self, user: str, room_id: str, text: str) -> dict[str, Any]:
        stream = f"room:{room_id}"
        self.offsets[stream] += 1
        message = {
            "id": f"{room_id}-{next(self.ids)}",
            "room_id": room_id,
            "cell": self.rooms[room_id]["cell"],
            "sender_id": user,
            "text": text,
            "offset": self.offsets[stream],
            "created_at": time.time_ns() // 1_000_000,
        }
        frame = {
            "ev": "chat.message",
            "stream": stream,
            "epoch": "raw",
            "offset": message["offset"],
            "data": {"message": message},
        }
        encoded = _DUMPS(frame)
        for ws in list(self.room_sockets[room_id]):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(encoded)
        return {"message": message}


BROADCASTER = web.AppKey("broadcaster", Broadcaster)


async def signup(request: web.Request) -> web.Response:
    user = f"raw-{next(request.app[BROADCASTER].ids)}"
    return web.json_response(
        {"user": {"id": user}, "access_token": user, "refresh_token": user}, status=201
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[BROADCASTER]
    ws = web.WebSocketResponse(protocols=("hl.json",), compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    user = request.headers.get("Authorization", "Bearer anonymous").removeprefix("Bearer ")
    await ws.send_str(_DUMPS({"ev": "hello", "data": {"user_id": user, "session_id": user}}))
    where: dict[str, Any] = {}
    cells: list[str] = []
    rooms: list[str] = []
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = json.loads(msg.data)
            op, data = req.get("op"), req.get("data") or {}
            if op == "locate":
                reply = hub.locate(ws, cells, data["lat"], data["lng"])
                cells = reply["cells"]
                where = {"lat": data["lat"], "lng": data["lng"], "cell": reply["cell"]}
            elif op == "post.create" and where:
                reply = await hub.post(user, where, data["text"])
            elif op == "room.create" and where and data.get("members"):
                reply = hub.room_create(user, where, data)
            elif op == "subscribe" and (sub := hub.subscribe(ws, user, data.get("stream", ""))):
                rooms.append(data["stream"].removeprefix("room:"))
                reply = sub
            elif op == "chat.send" and hub.member_room(user, data.get("room_id", "")):
                reply = await hub.chat_send(user, data["room_id"], data["text"])
            elif op == "ping":
                reply = {"pong": True}
            else:
                error = {"code": "bad_request", "message": f"raw baseline: no {op!r} here"}
                await ws.send_str(_DUMPS({"re": req.get("id"), "ok": False, "error": error}))
                continue
            await ws.send_str(_DUMPS({"re": req.get("id"), "ok": True, "data": reply}))
    finally:
        hub.leave(ws, cells)
        hub.unsubscribe_all(ws, rooms)
    return ws


def build_app(resolution: int = 8, k_ring: int = 1) -> web.Application:
    app = web.Application()
    app[BROADCASTER] = Broadcaster(resolution, k_ring)
    app.router.add_post("/api/v1/auth/signup", signup)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", ws_handler)
    return app


async def serve(host: str, port: int, resolution: int, k_ring: int) -> None:
    runner = web.AppRunner(build_app(resolution, k_ring), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"raw broadcast on http://{host}:{port}  (Ctrl-C stops)", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--resolution", type=int, default=8)
    p.add_argument("--k-ring", type=int, default=1)
    args = p.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.resolution, args.k_ring))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
