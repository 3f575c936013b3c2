"""Two-factor rules (RFC 6238 TOTP and recovery codes). Pure: the time is the caller's, the
storage is services/twofactor.py's.

A code is 6 digits for a 30 s time step; one step either side is accepted (clock drift), and
``match_step`` says which step matched so the caller can refuse that step (and every earlier
one) afterwards: each code works once. Recovery codes are 80 random bits in four groups of four
base32 letters; only a digest of each is kept, bound to its user.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import pyotp

DIGITS = 6
STEP_S = 30
DRIFT_STEPS = 1
RECOVERY_CODES = 10
ISSUER = "Hyperlocal"

_CODE = re.compile(r"^\d{6}$")
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/i/l
_RECOVERY = re.compile(r"^[a-z2-9]{4}(-?[a-z2-9]{4}){3}$")


def new_secret() -> str:
    """A TOTP seed: 160 random bits, base32 (what authenticator apps take)."""
    return pyotp.random_base32(32)


def otpauth_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def step_at(now: float) -> int:
    return int(now // STEP_S)


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).generate_otp(step)


def looks_like_totp(code: str) -> bool:
    return bool(_CODE.match(code))


def match_step(secret: str, code: str, now: float, after_step: int) -> int | None:
    """The time step whose code ``code`` is, within the drift window and later than
    ``after_step`` (the last one accepted), or None. Compared in constant time."""
    if not looks_like_totp(code):
        return None
    found: int | None = None
    here = step_at(now)
    for step in range(here - DRIFT_STEPS, here + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at(secret, step), code) and step > after_step:
            found = step
    return found


def new_recovery_codes() -> list[str]:
    return [
        "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(4))
        for _ in range(RECOVERY_CODES)
    ]


def normalize_recovery(code: str) -> str | None:
    """The canonical form of something typed as a recovery code, or None if it is not one."""
    value = code.strip().lower().replace(" ", "")
    if not _RECOVERY.match(value):
        return None
    bare = value.replace("-", "")
    return "-".join(bare[i : i + 4] for i in range(0, 16, 4))


def recovery_digest(user_id: str, code: str) -> str:
    """What is stored of a recovery code: bound to its user (a digest copied to another user's
    rows matches nothing)."""
    return hashlib.sha256(f"{user_id}\x00{code}".encode()).hexdigest()
