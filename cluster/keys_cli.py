"""`hyperlocal keys`: rotate the JWT signing keys and the data keys of secrets at rest.

- ``keys list``: the key ids of both rings (never the keys), current first.
- ``keys rotate-jwt``: a new current signing key in data_dir/jwt_keys.json; the old ones keep
  verifying until every token they signed has expired (retired keys older than the longest
  token lifetime are dropped). Running gateways pick the new key up on the first token that
  names it (and issue with it within seconds of re-reading the ring).
- ``keys rotate-data``: a new current data key in data_dir/data_keys.json, then every sealed
  secret (TOTP seeds, hook signing secrets) re-sealed with it; ``--prune`` then drops the old
  keys if no stored secret needs them any more.
- ``keys reseal``: re-seal every stored secret with the current key (after moving the old
  ``HL_DATA_KEY`` to ``HL_DATA_PREVIOUS_KEYS`` and setting a new one).
With keys in the environment (``HL_JWT_SECRET``, ``HL_DATA_KEY``) rotation is done there; the
file commands refuse, saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from cluster.config import Settings, load_settings
from cluster.runtime import Runtime


def _rings(settings: Settings) -> tuple[list[str], list[str]]:
    from store import keyfiles

    jwt = keyfiles.jwt_ring(settings.data_dir, settings.jwt_secret, settings.jwt_previous_secrets)
    data = keyfiles.data_ring(settings.data_dir, settings.data_key, settings.data_previous_keys)
    return [k.kid for k in jwt.keys], [k.kid for k in data.keys]


def cmd_list(args: argparse.Namespace) -> int:
    jwt, data = _rings(load_settings())
    print("jwt: " + " ".join(jwt))
    print("data: " + " ".join(data))
    return 0


def cmd_rotate_jwt(args: argparse.Namespace) -> int:
    from store import keyfiles

    settings = load_settings()
    if settings.jwt_secret:
        print("HL_JWT_SECRET is set: rotate by moving it to HL_JWT_PREVIOUS_SECRETS and setting"
              " a new one", file=sys.stderr)  # fmt: skip
        return 2
    keyfiles.jwt_ring(settings.data_dir, None, ())  # the file exists (adopting jwt_secret)
    keep = max(settings.access_ttl_s, settings.app_token_ttl_s) + 120
    ring = keyfiles.rotate(keyfiles.jwt_file(settings.data_dir), keyfiles.new_jwt_secret(), keep)
    print(f"jwt signing key now {ring.current.kid}; still verifying: "
          + " ".join(k.kid for k in ring.keys[1:]))  # fmt: skip
    return 0


def _reseal(settings: Settings) -> dict[str, int]:
    """Re-seal every stored secret, with Postgres started if it is the embedded one."""
    from services.secrets import Keys
    from store.db import create_pool

    async def reseal(resolved: Settings) -> dict[str, int]:
        assert resolved.database_url
        pool = await create_pool(resolved.database_url, min_size=1, max_size=2)
        try:
            return await Keys(resolved).reseal(pool)
        finally:
            await pool.close()

    runtime = Runtime(settings)
    try:
        return asyncio.run(reseal(runtime.start_services()))
    finally:
        runtime.stop()


def cmd_reseal(args: argparse.Namespace) -> int:
    counts = _reseal(load_settings())
    print("resealed: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


def cmd_rotate_data(args: argparse.Namespace) -> int:
    from models.sealing import new_data_key
    from store import keyfiles

    settings = load_settings()
    if settings.data_key:
        print("HL_DATA_KEY is set: rotate by moving it to HL_DATA_PREVIOUS_KEYS, setting a new"
              " one, then `hyperlocal keys reseal`", file=sys.stderr)  # fmt: skip
        return 2
    keyfiles.data_ring(settings.data_dir, None, ())
    path = keyfiles.data_file(settings.data_dir)
    ring = keyfiles.rotate(path, new_data_key(), None)
    print(f"data key now {ring.current.kid}")
    cmd_reseal(args)
    if args.prune:
        again = _reseal(settings)  # a gateway may have sealed with the old key meanwhile
        if any(again.values()):
            print("secrets were still being sealed with an old key: run --prune again later")
            return 1
        print(f"kept only {keyfiles.keep_only_current(path).current.kid}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="JWT signing keys and data keys: list, rotate, reseal")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    actions.add_parser("list", help="key ids, current first").set_defaults(func=cmd_list)
    actions.add_parser("rotate-jwt", help="a new JWT signing key").set_defaults(func=cmd_rotate_jwt)
    data = actions.add_parser("rotate-data", help="a new data key; re-seal every secret")
    data.add_argument("--prune", action="store_true", help="then drop the old data keys")
    data.set_defaults(func=cmd_rotate_data)
    actions.add_parser(
        "reseal", help="re-seal every secret with the current data key"
    ).set_defaults(func=cmd_reseal)
