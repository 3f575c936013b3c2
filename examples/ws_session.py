"""A small websocket client of Hyperlocal: sign in, open /ws, locate, do one thing; over the
typed client package (hyperlocal_client: ``Api.login``, ``Socket``; docs/client.md).

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
import json
import sys
from typing import Any

import aiohttp

from hyperlocal_client import Api, ApiError, Socket

LISBON = (38.7223, -9.1393)
APPROVE_CARD = "4242424242424242"


def show(kind: str, *parts: Any) -> None:
    text = [p if isinstance(p, str) else json.dumps(p, ensure_ascii=False) for p in parts]
    print(kind, *text, flush=True)


class OpError(Exception):
    """An op's error reply, named by the op (the script's ``error <op> <code>`` line)."""

    def __init__(self, op: str, exc: ApiError) -> None:
        self.code = exc.code
        super().__init__(f"{op} {exc.code}: {exc.message}")


class Session:
    """One socket (hyperlocal_client's ``Socket``): replies printed as they are answered,
    every event (and any frame nobody waits for) printed as it arrives."""

    def __init__(self, sock: Socket) -> None:
        self.sock = sock
        show("event", "hello", "-", sock.hello)  # the server's first frame
        self.printer = asyncio.create_task(self._print())

    async def _print(self) -> None:
        while True:
            frame = await self.sock.events.get()
            if "ev" in frame:
                show("event", frame["ev"], frame.get("stream", "-"), frame.get("data"))
            else:
                show("frame", frame)

    async def call(self, op: str, data: dict[str, Any], *, mutating: bool = False) -> Any:
        """Send ``op``, wait for its reply, print it; the reply's data, or ApiError. A
        mutating op retries ``unavailable`` with the same idempotency key."""
        try:
            if mutating:
                answer = await self.sock.mutate(op, data, retries=4, timeout_s=60)
            else:
                answer = await self.sock.request(op, data, timeout_s=60)
        except ApiError as exc:
            raise OpError(op, exc) from None
        show("reply", op, answer)
        return answer

    async def watch(self) -> int:
        """Print events until the server closes the socket (or Ctrl-C)."""
        await self.sock.closed.wait()
        await asyncio.sleep(0)  # let the printer show what came last
        print(f"closed {self.sock.close_code}", file=sys.stderr)
        return 1


async def sign_in(api: Api, args: argparse.Namespace) -> str:
    """An access token: --token as given, else POST /api/v1/auth/login."""
    if args.token:
        return str(args.token)
    try:
        return (await api.login(args.email, args.password)).access_token
    except ApiError as exc:
        raise SystemExit(f"error login {exc.status}: {exc.message}") from None


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
        api = Api(args.base, http)
        token = await sign_in(api, args)
        sock = await Socket.open(http, args.base, token)
        s = Session(sock)
        try:
            await s.call("locate", {"lat": args.lat, "lng": args.lng})
            if args.action == "watch":
                return await s.watch()  # until Ctrl-C or the server closes the socket
            await act(s, args)
            await asyncio.sleep(args.linger)
            return 0
        except OpError as exc:
            print(f"error {exc}", file=sys.stderr)
            return 1
        finally:
            await sock.close()
            s.printer.cancel()


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
