"""Access tokens and account rules, without I/O."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from models.auth import (
    Principal,
    TokenCodec,
    bearer_token,
    check_password,
    clean_display_name,
    normalize_email,
    token_digest,
)
from models.errors import BadRequest, Unauthorized

KEY = "k" * 64
codec = TokenCodec(KEY, "hl", "hl-api", 60)
ALICE = Principal("u1", frozenset({"user"}), "fam1")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_round_trip() -> None:
    assert codec.verify(codec.issue(ALICE, int(time.time()))) == ALICE


def test_expired_is_refused() -> None:
    with pytest.raises(Unauthorized, match="expired"):
        codec.verify(codec.issue(ALICE, int(time.time()) - 3600))


@pytest.mark.parametrize(
    "other",
    [
        TokenCodec("x" * 64, "hl", "hl-api", 60),  # another key: forged
        TokenCodec(KEY, "evil", "hl-api", 60),  # wrong issuer
        TokenCodec(KEY, "hl", "other-api", 60),  # wrong audience
    ],
)
def test_foreign_tokens_are_refused(other: TokenCodec) -> None:
    with pytest.raises(Unauthorized):
        codec.verify(other.issue(ALICE, int(time.time())))


def test_tampered_payload_is_refused() -> None:
    header, _, sig = codec.issue(ALICE, int(time.time())).split(".")
    now = int(time.time())
    claims = {"sub": "admin", "sid": "f", "roles": ["admin"], "iat": now, "exp": now + 60}
    payload = _b64({**claims, "iss": "hl", "aud": "hl-api"})
    with pytest.raises(Unauthorized):
        codec.verify(f"{header}.{payload}.{sig}")


def test_alg_none_and_other_algorithms_are_refused() -> None:
    now = int(time.time())
    claims = {"sub": "u1", "sid": "f", "iat": now, "exp": now + 60, "iss": "hl", "aud": "hl-api"}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(Unauthorized):
        codec.verify(unsigned)
    hs512 = jwt.encode(claims, KEY, algorithm="HS512")
    with pytest.raises(Unauthorized):
        codec.verify(hs512)


@pytest.mark.parametrize("missing", ["exp", "iat", "aud", "iss", "sub", "sid"])
def test_every_claim_is_required(missing: str) -> None:
    now = int(time.time())
    claims = {"sub": "u1", "sid": "f", "iat": now, "exp": now + 60, "iss": "hl", "aud": "hl-api"}
    del claims[missing]
    with pytest.raises(Unauthorized):
        codec.verify(jwt.encode(claims, KEY, algorithm="HS256"))


def test_bearer_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for bad in ("Basic abc", "Bearer", "abc", ""):
        with pytest.raises(Unauthorized):
            bearer_token(bad)


def test_account_rules() -> None:
    assert normalize_email("  Ann@Example.COM ") == "ann@example.com"
    for bad in ("ann", "ann@", "@x.y", "a b@x.y", "a@b", "x" * 250 + "@e.co"):
        with pytest.raises(BadRequest):
            normalize_email(bad)
    check_password("long enough")
    with pytest.raises(BadRequest):
        check_password("short")
    assert clean_display_name("  Ann ") == "Ann"
    for bad in ("", "   ", "a\x00b", "x" * 65):
        with pytest.raises(BadRequest):
            clean_display_name(bad)


def test_refresh_tokens_are_stored_as_digests() -> None:
    digest = token_digest("secret")
    assert len(digest) == 64 and "secret" not in digest


def test_undecodable_tokens_are_unauthorized_not_errors() -> None:
    for junk in ("é.é.é", "\udcff.a.b", "a" * 5000, "..", "\x00"):
        with pytest.raises(Unauthorized):
            codec.verify(junk)
