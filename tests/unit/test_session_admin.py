"""What a gateway does with the control actor's messages (gateway/sessions.py): a suspension
closes every socket of that user with 4003 and no one else's; a role change is felt at once
by the user's open sockets."""

from __future__ import annotations

import asyncio

from gateway.sessions import CLOSE_SUSPENDED, Session, SessionRegistry
from models.auth import Principal


class FakeWs:
    closed = False
    close_code = None

    def __init__(self) -> None:
        self.codes: list[int] = []

    async def close(self, code: int, message: bytes) -> None:
        self.codes.append(code)


def _session(registry: SessionRegistry, user: str, sid: str) -> tuple[Session, FakeWs]:
    ws = FakeWs()
    s = Session(ws, Principal(user, frozenset({"user"}), f"fam-{sid}"), sid, False, 8)  # type: ignore[arg-type]
    registry.add(s)
    return s, ws


async def test_suspend_closes_only_that_users_sockets_with_4003() -> None:
    registry = SessionRegistry()
    mine = [_session(registry, "u1", f"s{i}") for i in range(3)]
    other, other_ws = _session(registry, "u2", "t")
    assert registry.suspend("u1") == 3
    await asyncio.sleep(0.05)  # the close frames go out in their own tasks
    assert all(s.closed_with == CLOSE_SUSPENDED == 4003 for s, _ in mine)
    assert all(ws.codes == [4003] for _, ws in mine)
    assert other.closed_with is None and other_ws.codes == []


async def test_role_change_reaches_open_sockets() -> None:
    registry = SessionRegistry()
    a, _ = _session(registry, "u1", "a")
    b, _ = _session(registry, "u2", "b")
    registry.set_roles("u1", frozenset({"user", "moderator"}))
    assert a.principal.roles == {"user", "moderator"} and a.principal.session_id == "fam-a"
    assert b.principal.roles == {"user"}


async def test_reconcile_applies_postgres_to_the_checked_sessions_only() -> None:
    from store.users import SignInState

    registry = SessionRegistry()
    _, ended_ws = _session(registry, "u1", "a")
    _, suspended_ws = _session(registry, "u2", "b")
    promoted, _ = _session(registry, "u3", "c")
    _, gone_ws = _session(registry, "u4", "d")
    newcomer, newcomer_ws = _session(registry, "u5", "e")  # connected after the check
    states = {
        "fam-a": SignInState(False, ("user",), False, None),
        "fam-b": SignInState(True, ("user",), True, None),
        "fam-c": SignInState(True, ("user", "moderator"), False, None),
    }
    assert registry.reconcile({"fam-a", "fam-b", "fam-c", "fam-d"}, states) == 3
    await asyncio.sleep(0.05)
    assert ended_ws.codes == [4004] and gone_ws.codes == [4004]
    assert suspended_ws.codes == [4003]
    assert promoted.closed_with is None and promoted.principal.roles == {"user", "moderator"}
    assert newcomer.closed_with is None and newcomer_ws.codes == []
