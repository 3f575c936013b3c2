"""Issue 14's pure rules: the input guard, key rings and sealing, key files and rotation, JWT
key ids, TOTP and recovery codes, the sign-in backoff, idempotency fingerprints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyotp
import pytest

from gateway.input_guard import MAX_DEPTH, check_value, cut_deep_json, json_text_is_plain
from models import totp
from models.auth import Principal, TokenCodec
from models.errors import BadRequest, Unauthorized
from models.feed import PostCreate
from models.fingerprint import fingerprint
from models.keyring import Key, KeyRing
from models.login_throttle import Backoff
from models.sealing import Sealer, SealError, kid_of_sealed, new_data_key
from store import keyfiles

ALICE = Principal("u1", frozenset(), "fam1")


# -- input guard -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        {"a": "x\x00"},
        {"a": "\ud800"},
        {"\x00": 1},
        {"a": 2**63},
        {"a": -(2**63) - 1},
        {"a": float("nan")},
        {"a": b"bytes"},
        {1: "non-string key"},
        json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)),
    ],
)
def test_the_guard_refuses(value: object) -> None:
    with pytest.raises(BadRequest):
        check_value(value)


def test_the_guard_lets_plain_data_through() -> None:
    check_value({"a": [1, 2.5, None, True, "ü", {"b": 2**63 - 1}]})
    assert json_text_is_plain('{"id": 1, "op": "ping", "data": {"text": "hello"}}')
    assert not json_text_is_plain('{"x": "\\u0000"}')
    assert not json_text_is_plain('{"x": 12345678901234567890}')
    assert not json_text_is_plain('{"x": [1, -12345678901234567890]}')
    assert not json_text_is_plain('{"x":1e999}')  # infinity once parsed: walked, and refused
    with pytest.raises(BadRequest):
        check_value(json.loads('{"x":1e999}'))
    # digits inside a string (a timestamp in a message) are no number: no walk
    assert json_text_is_plain('{"data": {"text": "sent 1764654000123456789 at e5"}}')


def test_cut_deep_json_keeps_the_id_readable() -> None:
    deep = '{"id": 9, "x": ' + "[" * 2000 + "]" * 2000 + ', "s": "[[[["}'
    cut = cut_deep_json(deep)
    assert cut is not None and json.loads(cut)["id"] == 9 and json.loads(cut)["s"] == "[[[["
    assert cut_deep_json('{"a": [[1]]}') is None


# -- sealing and key rings -------------------------------------------------------------------------
def test_sealing_round_trip_binds_the_row_and_refuses_tampering() -> None:
    ring = KeyRing([Key("k1", new_data_key())])
    sealer = Sealer(ring)
    sealed = sealer.seal("JBSWY3DPEHPK3PXP", "totp:u1")
    assert sealed.startswith("hlenc:v1:k1:") and "JBSWY3DP" not in sealed
    assert sealer.open(sealed, "totp:u1") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(SealError):
        sealer.open(sealed, "totp:u2")  # another row's
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealError):
        sealer.open(tampered, "totp:u1")
    with pytest.raises(SealError):
        Sealer(KeyRing([Key("k2", new_data_key())])).open(sealed, "totp:u1")
    assert sealer.open("whsec_legacy-plaintext", "hook:h") == "whsec_legacy-plaintext"


def test_a_rotated_data_ring_opens_the_old_and_seals_with_the_new(tmp_path: Path) -> None:
    old = keyfiles.data_ring(tmp_path, None, ())
    sealed = Sealer(old).seal("s", "hook:h")
    new = keyfiles.rotate(keyfiles.data_file(tmp_path), new_data_key(), None)
    sealer = Sealer(new)
    assert sealer.open(sealed, "hook:h") == "s" and sealer.needs_reseal(sealed)
    assert kid_of_sealed(sealer.seal("s", "hook:h")) == new.current.kid != old.current.kid
    assert (keyfiles.data_file(tmp_path).stat().st_mode & 0o777) == 0o600
    assert keyfiles.keep_only_current(keyfiles.data_file(tmp_path)).keys == (new.current,)


def test_jwt_rotation_keeps_old_tokens_valid_until_dropped(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text("l" * 64)  # a key from before key ids
    ring = keyfiles.jwt_ring(tmp_path, None, ())
    assert ring.current.secret == "l" * 64
    before = TokenCodec(ring, "hl", "hl-api", 60).issue(ALICE, int(time.time()))
    path = keyfiles.jwt_file(tmp_path)
    rotated = keyfiles.rotate(path, keyfiles.new_jwt_secret(), keep_retired_s=3600)
    codec = TokenCodec(rotated, "hl", "hl-api", 60)
    assert codec.verify(before) == ALICE
    after = codec.issue(ALICE, int(time.time()))
    assert json.loads(_header(after))["kid"] == rotated.current.kid
    dropped = keyfiles.rotate(path, keyfiles.new_jwt_secret(), keep_retired_s=-1)
    with pytest.raises(Unauthorized, match="unknown signing key"):
        TokenCodec(dropped, "hl", "hl-api", 60).verify(before)


def test_a_token_without_kid_is_refused() -> None:
    import jwt

    now = int(time.time())
    claims = {"sub": "u", "sid": "s", "iat": now, "exp": now + 30, "iss": "hl", "aud": "hl-api"}
    token = jwt.encode(claims, "k" * 64, algorithm="HS256")
    with pytest.raises(Unauthorized):
        TokenCodec("k" * 64, "hl", "hl-api", 60).verify(token)


def _header(token: str) -> str:
    import base64

    head = token.split(".")[0]
    return base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()


# -- two-factor ------------------------------------------------------------------------------------
def test_totp_codes_drift_one_step_and_work_once() -> None:
    secret = totp.new_secret()
    now = time.time()
    here = totp.step_at(now)
    code = pyotp.TOTP(secret).at(now)
    assert totp.match_step(secret, code, now, after_step=0) == here
    assert totp.match_step(secret, code, now, after_step=here) is None  # replay
    previous = pyotp.TOTP(secret).at(now - 30)
    assert totp.match_step(secret, previous, now, after_step=0) == here - 1
    stale = pyotp.TOTP(secret).at(now - 90)
    assert totp.match_step(secret, stale, now, after_step=0) is None
    assert totp.match_step(secret, "12345", now, after_step=0) is None
    assert totp.otpauth_uri(secret, "a@b.test").startswith("otpauth://totp/Hyperlocal:a%40b.test")


def test_recovery_codes() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == totp.RECOVERY_CODES == len(set(codes))
    code = codes[0]
    assert totp.normalize_recovery(code.upper().replace("-", " ")) == code
    assert totp.normalize_recovery("not a code") is None
    assert totp.recovery_digest("u1", code) != totp.recovery_digest("u2", code)


# -- throttling, fingerprints ----------------------------------------------------------------------
def test_backoff_doubles_after_the_free_failures() -> None:
    rule = Backoff(free=3, base_s=1.0, max_s=10.0)
    assert [rule.wait_s(n) for n in range(2, 9)] == [0, 1, 2, 4, 8, 10, 10]
    assert rule.retry_after(2, last_at=100.0, now=100.0) is None
    assert rule.retry_after(5, last_at=100.0, now=101.5) == 3
    assert rule.retry_after(5, last_at=100.0, now=105.0) is None


def test_fingerprints_tell_other_data_apart() -> None:
    base = {"user_id": "u", "key": "k", "cell": "c", "lat": 1.0, "lng": 2.0, "text": "hi"}
    a = PostCreate(**base)  # type: ignore[arg-type]
    assert fingerprint(a) == fingerprint(PostCreate(**base))  # type: ignore[arg-type]
    assert fingerprint(a) == fingerprint(PostCreate(**{**base, "key": "other"}))  # type: ignore[arg-type]
    assert fingerprint(a) != fingerprint(PostCreate(**{**base, "text": "bye"}))  # type: ignore[arg-type]


def test_the_keys_command_rotates_the_jwt_ring(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "HL_DATA_DIR": str(tmp_path)}
    env.pop("HL_JWT_SECRET", None)

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cluster.cli", "keys", *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    first = keys("list").stdout.split()[1]
    rotated = keys("rotate-jwt")
    assert rotated.returncode == 0 and first in rotated.stdout, rotated
    ring = keys("list").stdout.splitlines()[0].split()[1:]
    assert len(ring) == 2 and ring[1] == first
    refused = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "keys", "rotate-jwt"],
        env={**env, "HL_JWT_SECRET": "s" * 40}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "HL_JWT_PREVIOUS_SECRETS" in refused.stderr
