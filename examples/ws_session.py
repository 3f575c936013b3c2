"""A small websocket client of Hyperlocal: sign in, open /ws, locate, do one thing.

Run it from the repository root while `make run` is serving (docs/quickstart.md walks through it):

    .venv/bin/python examples/ws_session.py --email E --password P watch
    .venv/bin/python examples/ws_session.py --email E --password P post "Fresh bread at Rua Augusta"
    .venv/bin/python examples/ws_session.py --email E --password P chat USER_ID "hello"
    .venv/bin/python examples/ws_session.py --email E --password P nearby
    .venv/bin/python examples/ws_session.py --email E --password P buy LISTING_ID [--qty 2]

`watch` prints every event until Ctrl-C; the other actions print their replies and the events
that arrive until `--linger` seconds after the last one. Options: `--base URL` (default
http://127.0.0.1:8080), `--token ACCESS_TOKEN` instead of `--email`/`--password`, `--lat`/`--lng`
(default: central Lisbon, the quick start's neighbourhood), `buy --card` (a sandbox test card:
4242424242424242 approves, 4000000000000002 is declined).

Frames follow docs/protocol.md: every request has an `id` (echoed as `re` in its reply) and every
mutating op an idempotency `key`; an `unavailable` error is retried with the same key. One output
line per frame: `event <ev> <stream> <data json>`, `reply <op> <data json>`, or (on stderr, exit
status 1) `error <op> <code>: <message>`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import uuid
from typing import Any

import aiohttp

LISBON = (38.7223, -9.1393)
APPROVE_CARD = "4242424242424242"


def show(kind: str, *parts: Any) -> None:
    text = [p if isinstance(p, str) else json.dumps(p, ensure_ascii=False) for p in parts]
    print(kind, *text, flush=True)


class OpError(Exception):
    def __init__(self, op: str, error: dict[str, Any]) -> None:
        self.code = str(error.get("code"))
        super().__init__(f"{op} {self.code}: {error.get('message')}")


class Session:
    """One socket: requests matched to their replies by id, events printed as they arrive."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            future = self.pending.pop(frame.get("re"), None) if "re" in frame else None
            if future is not None:
                future.set_result(frame)
            elif "ev" in frame:
                show("event", frame["ev"], frame.get("stream", "-"), frame.get("data"))
            else:
                show("frame", frame)
        for future in self.pending.values():
            future.set_exception(ConnectionError(f"socket closed ({self.ws.close_code})"))

    async def call(self, op: str, data: dict[str, Any], *, mutating: bool = False) -> Any:
        """Send ``op``, wait for its reply, print it; the reply's data, or OpError."""
        key = uuid.uuid4().hex if mutating else None  # one key for all retries of this call
        attempt = 0
        while True:
            ident = next(self.ids)
            frame: dict[str, Any] = {"id": ident, "op": op, "data": data}
            if key is not None:
                frame["key"] = key
            future = asyncio.get_running_loop().create_future()
            self.pending[ident] = future
            await self.ws.send_json(frame)
            reply = await asyncio.wait_for(future, 60)
            if reply["ok"]:
                show("reply", op, reply["data"])
                return reply["data"]
            attempt += 1
            if reply["error"].get("code") != "unavailable" or attempt == 5:
                raise OpError(op, reply["error"])
            await asyncio.sleep(attempt)  # "retry later, with the same idempotency key"


async def sign_in(http: aiohttp.ClientSession, args: argparse.Namespace) -> str:
    """An access token: --token as given, else POST /api/v1/auth/login."""
    if args.token:
        return str(args.token)
    body = {"email": args.email, "password": args.password}
    async with http.post(f"{args.base}/api/v1/auth/login", json=body) as resp:
        answer = await resp.json(content_type=None)
    if resp.status != 200:
        raise SystemExit(f"error login {resp.status}: {answer['error']['message']}")
    return str(answer["access_token"])


async def act(s: Session, args: argparse.Namespace) -> None:
    if args.action == "post":
        await s.call("post.create", {"text": args.text}, mutating=True)
    elif args.action == "chat":
        room = (await s.call("chat.open", {"user_id": args.user_id}))["room"]
        await s.call("chat.send", {"room_id": room["id"], "text": args.text}, mutating=True)
    elif args.action == "nearby":
        await s.call("listings.nearby", {"lat": args.lat, "lng": args.lng})
    elif args.action == "buy":
        item = {"listing_id": args.listing_id, "qty": args.qty}
        await s.call("cart.add", item, mutating=True)
        payment = {"provider": "sandbox", "card": args.card}
        await s.call("checkout", {"payment": payment}, mutating=True)


async def run(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as http:
        token = await sign_in(http, args)
        ws = await http.ws_connect(
            f"{args.base}/ws", headers={"Authorization": f"Bearer {token}"}, protocols=("hl.json",)
        )
        s = Session(ws)  # the server's first frame, `hello`, is printed as an event
        try:
            await s.call("locate", {"lat": args.lat, "lng": args.lng})
            if args.action == "watch":
                await s.reader  # until Ctrl-C or the server closes the socket
                print(f"closed {ws.close_code}", file=sys.stderr)
                return 1
            await act(s, args)
            await asyncio.sleep(args.linger)
            return 0
        except OpError as exc:
            print(f"error {exc}", file=sys.stderr)
            return 1
        finally:
            await ws.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="http://127.0.0.1:8080", help="the gateway's URL")
    p.add_argument("--email")
    p.add_argument("--password")
    p.add_argument("--token", help="an access token instead of --email/--password")
    p.add_argument("--lat", type=float, default=LISBON[0])
    p.add_argument("--lng", type=float, default=LISBON[1])
    p.add_argument("--linger", type=float, default=0.5, help="seconds to print events after")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("watch", help="print events until Ctrl-C")
    actions.add_parser("post", help="post TEXT here").add_argument("text")
    chat = actions.add_parser("chat", help="send TEXT to USER_ID in your direct room")
    chat.add_argument("user_id")
    chat.add_argument("text")
    actions.add_parser("nearby", help="listings near you")
    buy = actions.add_parser("buy", help="put a listing in the cart and check out")
    buy.add_argument("listing_id")
    buy.add_argument("--qty", type=int, default=1)
    buy.add_argument("--card", default=APPROVE_CARD, help="a sandbox test card")
    args = p.parse_args(argv)
    if not args.token and not (args.email and args.password):
        p.error("give --email and --password, or --token")
    args.base = args.base.rstrip("/")
    return args


def main() -> int:
    args = parse_args()
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    except (aiohttp.ClientError, ConnectionError) as exc:
        print(f"error connection: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
