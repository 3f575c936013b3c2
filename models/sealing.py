"""Secrets at rest: AES-256-GCM sealing of short secrets (TOTP seeds, hook signing secrets)
under a ring of data keys (models/keyring.py; the keys come from the environment or the data
dir, store/keyfiles.py). Pure computation, no I/O.

A sealed value is text: ``hlenc:v1:<kid>:<base64url(nonce | ciphertext+tag)>``. The nonce is
96 random bits per seal; the associated data binds the value to where it is kept (e.g.
``totp:<user id>``), so a sealed secret copied into another row does not open there. A value
without the prefix is a plaintext one written before sealing existed: ``open`` returns it as
it is (``hyperlocal keys rotate-data`` seals every such row).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from models.keyring import Key, KeyRing

PREFIX = "hlenc:v1:"
_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value that does not open: unknown key, tampered, or another row's."""


def new_data_key() -> str:
    """A fresh 256-bit data key, base64 (the form the environment and the key file hold)."""
    return base64.b64encode(os.urandom(32)).decode()


def _aead(key: Key) -> AESGCM:
    try:
        raw = base64.b64decode(key.secret, validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"data key {key.kid} is not base64") from None
    if len(raw) != 32:
        raise SealError(f"data key {key.kid} is not 32 bytes")
    return AESGCM(raw)


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def kid_of_sealed(value: str) -> str | None:
    """The id of the key that sealed ``value`` (None for a plaintext value)."""
    if not is_sealed(value):
        return None
    return value[len(PREFIX) :].partition(":")[0]


class Sealer:
    """Seals with the ring's current key, opens with any key of it."""

    __slots__ = ("_aeads", "ring")

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._aeads = {k.kid: _aead(k) for k in ring.keys}  # every key checked up front

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        kid = self.ring.current.kid
        body = self._aeads[kid].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + body).decode()}"

    def open(self, value: str, context: str) -> str:
        if not is_sealed(value):
            return value
        kid, _, blob = value[len(PREFIX) :].partition(":")
        aead = self._aeads.get(kid)
        if aead is None:
            raise SealError(f"sealed with key {kid}, which is not in the ring")
        try:
            raw = base64.urlsafe_b64decode(blob)
            plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise SealError("sealed value does not open (tampered or another row's)") from None
        return plain.decode()

    def needs_reseal(self, value: str) -> bool:
        """True for a plaintext value or one sealed with a key that is not current."""
        return kid_of_sealed(value) != self.ring.current.kid
