"""Notification rules without I/O: preferences over defaults, quiet hours in the user's zone,
signed unsubscribe links, folded lines and templates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.errors import BadRequest
from models.notifications import (
    DIGEST_KINDS,
    KINDS,
    KindPrefs,
    NearbyArea,
    Preferences,
    QuietHours,
    SettingsBody,
    check_unsubscribe,
    kind_rows,
    quiet_until,
    unsubscribe_body,
    unsubscribe_token,
)
from models.notify_templates import Context, email_bodies, folded_line, render


def test_defaults_then_a_users_choice_then_the_global_switch() -> None:
    prefs = Preferences.of(None)
    assert prefs.wants("order.status", "email") and not prefs.wants("post.liked", "email")
    assert not prefs.wants("promotion", "inapp")
    assert prefs.wants("moderation.removed", "email")  # falls under "moderation"
    assert prefs.wants("some.new.kind", "inapp") and not prefs.wants("some.new.kind", "push")
    mine = prefs.updated(SettingsBody(kinds={"post.liked": KindPrefs(email=True)}))
    assert mine.wants("post.liked", "email") and prefs.stored == {}  # a new object
    off = mine.updated(SettingsBody(email=False))
    assert not off.wants("post.liked", "email") and not off.wants("order.status", "email")
    assert off.wants("post.liked", "inapp")  # in-app has no global switch
    public = off.public()
    assert public["email"] is False and set(public["kinds"]) == set(KINDS)


def test_the_trigger_reads_every_kind_with_its_defaults() -> None:
    rows = {row[0]: row[1:] for row in kind_rows()}
    assert set(rows) == set(KINDS)
    assert rows["order.status"] == (True, True, True, False)
    assert rows["promotion"] == (False, False, False, True)
    assert {k for k, (*_, digest) in rows.items() if digest} == DIGEST_KINDS


def test_nearby_keeps_a_cell_and_is_cleared_on_request() -> None:
    area = SettingsBody(nearby=NearbyArea(lat=38.7, lng=-9.1))
    prefs = Preferences.of(None).updated(area, "88393362a3fffff")
    assert prefs.nearby_cell() == "88393362a3fffff"
    assert prefs.public()["nearby"] == {"cell": "88393362a3fffff"}  # never the point
    assert "lat" not in str(prefs.stored)
    cleared = prefs.updated(SettingsBody(clear_nearby=True))
    assert cleared.nearby_cell() is None and "nearby" not in cleared.public()
    with pytest.raises(BadRequest):
        prefs.updated(SettingsBody(nearby=NearbyArea(lat=1.0, lng=2.0), clear_nearby=True), "x")


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(BadRequest):
        Preferences.of(None).updated(SettingsBody(kinds={"nope": KindPrefs(email=True)}))


def test_quiet_hours_in_the_users_zone_wrapping_midnight() -> None:
    night = QuietHours(start="22:00", end="07:00", tz="America/New_York")
    # 03:00 UTC is 22:00 in New York (EST, UTC-5): inside, until 07:00 local = 12:00 UTC
    assert quiet_until(night, datetime(2026, 1, 10, 3, 0, tzinfo=UTC)) == datetime(
        2026, 1, 10, 12, 0, tzinfo=UTC
    )
    assert quiet_until(night, datetime(2026, 1, 10, 2, 59, tzinfo=UTC)) is None
    assert quiet_until(night, datetime(2026, 1, 10, 12, 0, tzinfo=UTC)) is None
    day = QuietHours(start="09:00", end="17:00", tz="UTC")
    assert quiet_until(day, datetime(2026, 1, 10, 16, 59, tzinfo=UTC)) is not None
    assert quiet_until(QuietHours(start="09:00", end="09:00", tz="UTC"), datetime.now(UTC)) is None
    assert quiet_until(None, datetime.now(UTC)) is None
    with pytest.raises(BadRequest):
        QuietHours(start="22:00", end="07:00", tz="Nowhere/City")


def test_unsubscribe_links_are_signed_per_user_and_scope() -> None:
    key = b"k" * 32
    token = unsubscribe_token(key, "u1", "order.status")
    check_unsubscribe(key, "u1", "order.status", token)
    for user, scope, tok, k in (
        ("u2", "order.status", token, key),
        ("u1", "all", token, key),
        ("u1", "order.status", token, b"x" * 32),
        ("u1", "no.such", token, key),
    ):
        with pytest.raises(BadRequest):
            check_unsubscribe(k, user, scope, tok)
    assert unsubscribe_body("all").email is False
    kinds = unsubscribe_body("order.status").kinds
    assert kinds is not None and kinds["order.status"].email is False


def test_templates_fold_and_escape() -> None:
    assert folded_line("Ana liked your post", 12) == "Ana and 11 others liked your post"
    assert folded_line("Ana liked your post", 2) == "Ana and 1 other liked your post"
    ctx = Context("<b>Bo</b>", "Ana", "https://app.example", "https://app.example/u?x=1&y=2")
    rendered = render("post.liked", {"by": "u1", "post_id": "p"}, ctx)
    assert rendered.text == "Ana liked your post"
    text, html = email_bodies(rendered, ctx)
    assert "Unsubscribe: https://app.example/u?x=1&y=2" in text
    assert "&lt;b&gt;Bo&lt;/b&gt;" in html and "x=1&amp;y=2" in html
    assert render("brand.new", {}, ctx).text.endswith("(brand.new)")
    order = render("order.status", {"order": {"id": "o1", "status": "paid"}}, ctx)
    assert order.subject == "Your order was updated" and "o1 is now paid" in order.text


def test_a_daily_digest_takes_the_social_emails_only() -> None:
    prefs = Preferences.of(None).updated(SettingsBody(digest="daily"))
    assert prefs.public()["digest"] == "daily"
    assert prefs.digested("post.liked", "email") and not prefs.digested("post.liked", "push")
    assert not prefs.digested("order.status", "email")
    assert not Preferences.of(None).digested("post.liked", "email")
    ctx = Context("Bo", "", "https://app.example")
    digest = render("digest", {"lines": ["Ana liked your post"], "count": 3}, ctx)
    assert digest.subject == "Your Hyperlocal digest"
    assert digest.text == "- Ana liked your post\n- and 2 more"
    assert "<br>" in email_bodies(digest, ctx)[1]


def test_quiet_hours_zones_are_the_known_names_only() -> None:
    from models.notifications import known_zones, zone

    assert "Europe/Paris" in known_zones() and "UTC" in known_zones()
    assert str(zone("Europe/Paris")) == "Europe/Paris"
    for name in ("Europe/../UTC", "posixrules", "", "europe/paris"):
        with pytest.raises(BadRequest):
            zone(name)
