"""docs/quickstart.md, run for real: its shell blocks with bash and curl, examples/ws_session.py.

Which blocks run is said in the doc by an HTML comment on the line before each ```sh block:

- ``<!-- quickstart:run -->``: run in "terminal 1", one long-lived ``bash`` fed block after
  block (variables and functions carry over, like a person typing), under ``set -euo pipefail``;
- ``<!-- quickstart:run status=N -->``: the same, but the block must exit with status ``N``;
- ``<!-- quickstart:run terminal=2 -->``: started in a second ``bash`` and left running (Bob's
  ``watch``); the test goes on once it has printed its ``reply locate`` line;
- ``<!-- quickstart:skip -->``: not run (``make run``: the test brings its own gateway).

Every ```sh block must carry one of them. The doc's ``$HL`` defaults to http://127.0.0.1:8080;
the test exports ``HL`` (the session's gateway), ``RUN`` (a fresh suffix: the database is shared
by the whole session) and ``TMPDIR`` (a private directory for the doc's env file) first. It then
checks what the commands printed and what Bob's watcher saw live. A second test runs the
first steps shown in README.md's "## Quick start" the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quickstart.md"
_MARKED = re.compile(
    r"<!--\s*quickstart:(run|skip)((?:\s+\w+=\w+)*)\s*-->\n```sh\n(.*?)\n```", re.S
)
_DEFAULT_HL = "${HL:-http://127.0.0.1:8080}"
_TIMEOUT = 30.0


@dataclass
class Block:
    mode: str
    opts: dict[str, str]
    code: str


def doc_blocks() -> list[Block]:
    text = DOC.read_text()
    blocks = [
        Block(mode, dict(o.split("=") for o in opts.split()), code)
        for mode, opts, code in _MARKED.findall(text)
    ]
    assert len(blocks) == text.count("```sh"), "every ```sh block needs a quickstart: marker"
    return blocks


@dataclass
class Watcher:
    """A bash left running (terminal 2); its output collected line by line."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def _collect(self) -> None:
        assert self.proc.stdout
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))

    async def wait_for(self, what: str, pred: Any) -> Any:
        """The first parsed output line satisfying ``pred``, waiting for it."""
        deadline = asyncio.get_running_loop().time() + _TIMEOUT
        while True:
            for line in self.lines:
                with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
                    if (found := pred(line)) is not None:
                        return found
            if asyncio.get_running_loop().time() > deadline or self.proc.returncode is not None:
                transcript = "\n".join(self.lines)
                raise AssertionError(f"terminal 2 never showed {what}:\n{transcript}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C, as a person would
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self.task:
            await self.task


async def _bash(env: dict[str, str], *args: str, stdin: int | None = None) -> Any:
    return await asyncio.create_subprocess_exec(
        "bash", "--noprofile", "--norc", *args, cwd=ROOT, env=env, stdin=stdin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True, limit=1 << 22,
    )  # fmt: skip


async def run_in(shell: asyncio.subprocess.Process, block: Block, out: list[str]) -> list[str]:
    """Feed one block to terminal 1; its output lines (checks its exit status)."""
    assert shell.stdin and shell.stdout
    token = f"__quickstart_{uuid.uuid4().hex}__"
    want = int(block.opts.get("status", "0"))
    if want:  # in a subshell, so that the expected failure does not end terminal 1
        script = f"__qs=0\n(\n{block.code}\n) || __qs=$?\necho\necho {token} $__qs\n"
    else:
        script = f"{block.code}\necho\necho {token} 0\n"
    shell.stdin.write(script.encode())
    await shell.stdin.drain()
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(shell.stdout.readline(), _TIMEOUT)
        if not raw:
            transcript = "\n".join([*out, *lines])
            raise AssertionError(f"terminal 1 exited in:\n{block.code}\n---\n{transcript}")
        line = raw.decode().rstrip("\n")
        if line.startswith(token):
            status = int(line.split()[1])
            assert status == want, f"status {status} != {want}:\n{block.code}\n" + "\n".join(lines)
            out.extend(lines)
            return lines
        if line:
            lines.append(line)


def jsons(lines: list[str]) -> list[dict[str, Any]]:
    """The JSON documents curl printed (one per line)."""
    return [json.loads(line) for line in lines if line.startswith("{")]


def frames(lines: list[str], kind: str, name: str) -> list[Any]:
    """``reply <op> <json>`` data (kind reply) or ``event <ev> <stream> <json>`` (kind event)."""
    n = 3 if kind == "event" else 2
    return [
        json.loads(line.split(" ", n)[n]) for line in lines if line.startswith(f"{kind} {name} ")
    ]


def event(name: str, match: Any) -> Any:
    """A Watcher predicate: the data of an ``event <name>`` line that ``match`` accepts."""

    def pred(line: str) -> Any:
        if line.startswith(f"event {name} "):
            data = json.loads(line.split(" ", 3)[3])
            return data if match(data) else None
        return None

    return pred


async def test_quickstart_runs_as_written(server: TestServer, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: docs/quickstart.md is written with curl")
    blocks = [b for b in doc_blocks() if b.mode == "run"]
    assert len(blocks) >= 8, "the quick start lost its runnable steps"
    for b in blocks:
        loose = b.code.replace(_DEFAULT_HL, "$HL")
        assert "127.0.0.1" not in loose and ":8080" not in loose, f"use $HL, not:\n{b.code}"
    if not (ROOT / ".venv/bin/python").exists():  # a checkout whose venv lives elsewhere
        blocks = [Block(b.mode, b.opts, b.code.replace(".venv/bin/python", sys.executable))
                  for b in blocks]  # fmt: skip

    run = uuid.uuid4().hex[:12]
    env = {
        **os.environ,
        "HL": str(server.make_url("")).rstrip("/"),
        "RUN": run,
        "TMPDIR": str(tmp_path),
    }
    out: list[str] = []  # terminal 1, all of it
    last: list[str] = []  # the last block's output (the declined card)
    shell = await _bash(env, "-s", stdin=asyncio.subprocess.PIPE)
    watcher: Watcher | None = None
    try:
        shell.stdin.write(b"set -euo pipefail\n")  # type: ignore[union-attr]
        for block in blocks:
            if block.opts.get("terminal") == "2":
                assert watcher is None, "one terminal-2 block (the watcher)"
                proc = await _bash(env, "-c", "set -euo pipefail\n" + block.code)
                watcher = Watcher(proc)
                watcher.task = asyncio.create_task(watcher._collect())
                await watcher.wait_for(
                    "reply locate", lambda ln: ln.startswith("reply locate ") or None
                )
                continue
            last = await run_in(shell, block, out)
        assert watcher is not None, "the quick start has no terminal-2 (watch) block"

        # What terminal 1 printed: sign-ups, the post, the listing, the checkout, the accept.
        docs = jsons(out)
        users = {
            d["user"]["email"]: d["user"]["id"] for d in docs if "user" in d and "access_token" in d
        }
        alice_id, bob_id = users[f"alice-{run}@example.com"], users[f"bob-{run}@example.com"]
        assert any(
            d.get("user", {}).get("id") == alice_id for d in docs if "access_token" not in d
        ), "GET /api/v1/me"
        (post,) = [r["post"] for r in frames(out, "reply", "post.create")]
        assert post["author_id"] == alice_id and post["text"].startswith("Hello, neighbours!")
        (sent,) = [r["message"] for r in frames(out, "reply", "chat.send")]
        assert sent["sender_id"] == alice_id
        (vendor,) = [d["vendor"] for d in docs if "vendor" in d]
        assert vendor["user_id"] == bob_id
        (listing,) = [d["listing"] for d in docs if "listing" in d]
        assert listing["vendor_id"] == vendor["id"] and listing["stock"] == 12
        nearby = frames(out, "reply", "listings.nearby")
        assert listing["id"] in [item["id"] for item in nearby[0]["items"]]
        (checkout,) = frames(out, "reply", "checkout")  # the declined one is an error line
        (order,) = checkout["orders"]
        assert order["status"] == "paid" and order["total"] == 300, checkout
        assert order["items"][0]["listing_id"] == listing["id"] and order["items"][0]["qty"] == 2
        assert checkout["payment"]["status"] == "captured", checkout
        accepted = [d["order"] for d in docs if "order" in d]
        assert [(o["id"], o["status"]) for o in accepted] == [(order["id"], "accepted")]
        assert "error checkout payment_failed" in "\n".join(last), last

        # What Bob saw live in terminal 2.
        hello = await watcher.wait_for("hello", event("hello", lambda d: d))
        assert hello["user_id"] == bob_id
        await watcher.wait_for(
            "Alice's post", event("post.created", lambda d: d["post"]["id"] == post["id"])
        )
        msg = await watcher.wait_for(
            "Alice's message", event("chat.message", lambda d: d["message"]["id"] == sent["id"])
        )
        assert msg["message"]["text"] == "Hi Bob! Are you baking today?"
        await watcher.wait_for(
            "the new listing",
            event("listing.updated", lambda d: d["listing"]["id"] == listing["id"]),
        )
        for status in ("paid", "accepted"):
            await watcher.wait_for(
                f"the order {status}",
                event(
                    "order.updated",
                    lambda d, s=status: (
                        d["order"]["id"] == order["id"] and d["order"]["status"] == s
                    ),
                ),
            )
    finally:
        if watcher is not None:
            await watcher.stop()
        if shell.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                shell.stdin.write(b"exit 0\n")  # type: ignore[union-attr]
                shell.stdin.close()  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(shell.wait(), 5)
            except TimeoutError:
                os.killpg(shell.pid, signal.SIGKILL)
                await shell.wait()


async def test_readme_quick_start_runs(server: TestServer, tmp_path: Path) -> None:
    """The first steps shown in README.md's "## Quick start" (its own URL swapped for ours)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: README.md's quick start is written with curl")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```sh\n(.*?)\n```", section, re.S)
    assert "http://127.0.0.1:8080" in code
    code = code.replace("http://127.0.0.1:8080", str(server.make_url("")).rstrip("/"))
    if not (ROOT / ".venv/bin/python").exists():
        code = code.replace(".venv/bin/python", sys.executable)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = await _bash(env, "-c", "set -euo pipefail\n" + code)
    raw, _ = await asyncio.wait_for(proc.communicate(), _TIMEOUT)
    lines = raw.decode().splitlines()
    assert proc.returncode == 0, raw.decode()
    (signup,) = [d for d in jsons(lines) if "access_token" in d]
    (reply,) = frames(lines, "reply", "post.create")
    assert reply["post"]["author_id"] == signup["user"]["id"], raw.decode()
