"""The settings object: validated at startup, every knob documented in docs/config.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from cluster.config import Settings, config_markdown, env_name, load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_every_knob_has_a_docstring() -> None:
    missing = [name for name, info in Settings.model_fields.items() if not info.description]
    assert not missing, f"document these settings in cluster/config.py: {missing}"


def test_docs_config_md_is_in_step_with_the_code() -> None:
    assert config_markdown() in DOC.read_text(), (
        "docs/config.md is stale: regenerate its table with `hyperlocal config --markdown`"
    )


def test_environment_names() -> None:
    assert env_name("database_url") == "DATABASE_URL"
    assert env_name("group_commit_ms") == "HL_GROUP_COMMIT_MS"


def test_bad_values_are_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HL_K_RING", "-1")
    with pytest.raises(ValidationError, match="k_ring"):
        load_settings()
    monkeypatch.delenv("HL_K_RING")
    with pytest.raises(ValidationError, match="32 bytes"):
        load_settings(jwt_secret="short")
    monkeypatch.setenv("HL_ALLOWED_ORIGINS", "https://a.example/, https://b.example")
    assert load_settings().allowed_origins == ("https://a.example", "https://b.example")


def test_client_address_behind_trusted_proxies() -> None:
    from aiohttp.test_utils import make_mocked_request

    from gateway.ratelimit import client_address, scope_of

    spoofed = make_mocked_request("GET", "/", headers={"X-Forwarded-For": "6.6.6.6, 1.2.3.4"})
    assert client_address(spoofed, 1) == "1.2.3.4"  # the proxy's entry, not the client's lie
    assert client_address(spoofed, 2) == "6.6.6.6"
    bare = make_mocked_request("GET", "/")
    assert client_address(bare, 1) == client_address(bare, 0)  # no header: the peer
    assert scope_of("/api/v1/oauth/token") == "auth"
    assert scope_of("/api/v1/payments/stripe/webhook") is None
    assert scope_of("/api/v1/me") == "rest"


def _gc_after_settle(env: dict[str, str]) -> list[int]:
    """[young, middle, full thresholds, frozen objects] in a fresh interpreter after settle."""
    code = (
        "import gc, json\n"
        "from cluster import gcpolicy\n"
        "from cluster.config import Settings\n"
        "gcpolicy.settle(Settings())\n"
        "print(json.dumps([*gc.get_threshold(), gc.get_freeze_count()]))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HL_GC")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout))


def test_gc_policy_freezes_and_sets_thresholds() -> None:
    young, middle, full, frozen = _gc_after_settle({"HL_GC_YOUNG": "5000"})
    assert (young, middle, full) == (5000, 10, 100)
    assert frozen > 1000  # at least the imported modules' objects


def test_gc_policy_can_leave_objects_unfrozen() -> None:
    young, _, full, frozen = _gc_after_settle({"HL_GC_FREEZE": "false", "HL_GC_FULL_EVERY": "7"})
    assert (young, full, frozen) == (10_000, 7, 0)
