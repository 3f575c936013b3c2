"""Notification rules: kinds and their defaults, preferences, quiet hours, unsubscribe links,
rate windows. Pure, no I/O (the notifier in services/notifier.py applies them).

A notification has a ``kind`` (``post.liked``, ``order.status``, ...); each kind has a default
per channel (in-app, email, push) that a user may override, under two global switches
(``email``, ``push``). Quiet hours ``{start, end, tz}`` hold email and push back (never drop
them) until the window ends, in the user's time zone.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator, model_validator

from models.errors import BadRequest

Channel = Literal["email", "push"]
CHANNELS: tuple[Channel, ...] = ("email", "push")


@dataclass(frozen=True, slots=True)
class KindDefault:
    """What a kind does for a user who has not said otherwise, and what it is about."""

    inapp: bool
    email: bool
    push: bool
    about: str


KINDS: dict[str, KindDefault] = {
    "comment.created": KindDefault(True, False, True, "a reply to your post"),
    "post.liked": KindDefault(True, False, False, "a like of your post"),
    "user.followed": KindDefault(True, False, True, "a new follower"),
    "post.shared": KindDefault(True, False, False, "a repost of your post (docs/social.md)"),
    "room.opened": KindDefault(True, False, True, "someone opened a direct chat with you"),
    "room.added": KindDefault(True, False, True, "you were added to a group room"),
    "chat.message": KindDefault(True, False, True, "a direct message while you are offline"),
    "order.status": KindDefault(True, True, True, "your order changed status (buyer)"),
    "order.vendor": KindDefault(True, True, True, "an order of your shop changed (vendor)"),
    "dispute.updated": KindDefault(True, True, True, "a dispute you are part of moved"),
    "promotion": KindDefault(False, False, False, "promotions of vendors you follow or near you"),
    "moderation": KindDefault(True, True, False, "moderation of your content or account"),
    "appeal.decided": KindDefault(True, True, False, "an appeal you made was decided"),
}
"""Every kind a user can set, with its defaults (docs/notifications.md lists them)."""

DIGEST_KINDS = frozenset(
    {
        "comment.created",
        "post.liked",
        "user.followed",
        "post.shared",
        "room.opened",
        "room.added",
        "promotion",
    }
)
"""Kinds whose emails a daily digest replaces (``digest: "daily"``); orders, disputes,
moderation and account emails always go out on their own."""

ACCOUNT_KINDS = frozenset(
    {"account.password_reset", "account.email_verify", "account.signup_attempt"}
)
"""Emails about the account itself: always sent, no preference or quiet hours applies."""


def kind_rows() -> list[tuple[str, bool, bool, bool, bool]]:
    """``KINDS`` as the ``hl_notify`` trigger reads them (table ``notification_kinds``,
    migration 0020): ``(kind, inapp, email, push, digest)``, ``digest`` when a daily digest
    replaces the kind's emails."""
    return [(k, d.inapp, d.email, d.push, k in DIGEST_KINDS) for k, d in KINDS.items()]


def open_channels(smtp: bool) -> dict[str, bool]:
    """The channels a deployment can deliver on, as the trigger reads them (table
    ``notification_channels``, migration 0034): email only with an SMTP server, push always
    (the deployment's own VAPID keys; a user without a device still gets no push row)."""
    return {"email": smtp, "push": True}


def settings_kind(kind: str) -> str:
    """The preference entry a notification kind falls under (``moderation.removed`` under
    ``moderation``; an unknown kind under itself, with the fallback defaults)."""
    return "moderation" if kind.startswith("moderation.") else kind


_FALLBACK = KindDefault(True, False, False, "")

HHMM = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class QuietHours(BaseModel):
    """``start``..``end`` (``HH:MM``, may wrap midnight) in the IANA zone ``tz``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: HHMM
    end: HHMM
    tz: Annotated[str, StringConstraints(min_length=1, max_length=64)]

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value


def _no_nulls(value: Any) -> Any:
    """Leave a field out to keep its value; ``null`` is not a value of any of them."""
    if isinstance(value, dict) and any(v is None for v in value.values()):
        raise ValueError("null is not a value here: leave the field out to keep it")
    return value


class KindPrefs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    _nulls = model_validator(mode="before")(_no_nulls)
    inapp: bool | None = None
    email: bool | None = None
    push: bool | None = None


class NearbyArea(BaseModel):
    """Where a user takes promotions of vendors they do not follow from: a point, of which only
    its cell is kept (the vendors whose neighbourhood holds that cell may reach them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    lat: float
    lng: float


class SettingsBody(BaseModel):
    """PUT /api/v1/me/notification-settings: any part; what is left out keeps its value."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    _nulls = model_validator(mode="before")(_no_nulls)
    email: bool | None = None
    push: bool | None = None
    kinds: dict[str, KindPrefs] | None = None
    quiet_hours: QuietHours | None = None
    clear_quiet_hours: bool = False
    digest: Literal["off", "daily"] | None = None
    nearby: NearbyArea | None = None
    clear_nearby: bool = False


@functools.cache
def known_zones() -> tuple[str, ...]:
    """The IANA zone names this machine knows (what ``quiet_hours.tz`` may be; the OpenAPI
    spec lists them, so spec and server agree)."""
    return tuple(sorted(available_timezones()))


def zone(name: str) -> ZoneInfo:
    if name not in known_zones():
        raise BadRequest(f"quiet_hours.tz: unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"quiet_hours.tz: unknown time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class Preferences:
    """A user's stored choices (only what they changed) over the defaults."""

    stored: dict[str, Any]

    @staticmethod
    def of(row: dict[str, Any] | None) -> Preferences:
        return Preferences(dict(row or {}))

    def channel_on(self, channel: Channel) -> bool:
        return bool(self.stored.get(channel, True))

    def wants(self, kind: str, channel: Channel | Literal["inapp"]) -> bool:
        """Does this user want ``kind`` on ``channel`` (the global switch included)?"""
        if channel != "inapp" and not self.channel_on(channel):
            return False
        key = settings_kind(kind)
        mine = self.stored.get("kinds", {}).get(key, {}).get(channel)
        if mine is not None:
            return bool(mine)
        return bool(getattr(KINDS.get(key, _FALLBACK), channel))

    def digest(self) -> str:
        """``daily``: the emails of ``DIGEST_KINDS`` come as one email a day; else ``off``."""
        return str(self.stored.get("digest", "off"))

    def digested(self, kind: str, channel: str) -> bool:
        """Is this email left to the daily digest instead of sent on its own?"""
        return channel == "email" and self.digest() == "daily" and kind in DIGEST_KINDS

    def nearby_cell(self) -> str | None:
        """The cell promotions of nearby vendors (not followed) may reach this user in."""
        raw = self.stored.get("nearby")
        return str(raw["cell"]) if raw else None

    def quiet(self) -> QuietHours | None:
        raw = self.stored.get("quiet_hours")
        return QuietHours.model_validate(raw) if raw else None

    def updated(self, body: SettingsBody, nearby_cell: str | None = None) -> Preferences:
        """These preferences with ``body`` applied (``nearby_cell``: the cell of
        ``body.nearby``); an unknown kind is ``bad_request``."""
        if body.clear_nearby and body.nearby is not None:
            raise BadRequest("give either nearby or clear_nearby: true")
        out = dict(self.stored)
        for channel in CHANNELS:
            value = getattr(body, channel)
            if value is not None:
                out[channel] = value
        if body.kinds:
            unknown = sorted(set(body.kinds) - set(KINDS))
            if unknown:
                raise BadRequest(f"kinds: unknown kind {unknown[0]!r}; known: {', '.join(KINDS)}")
            kinds = {k: dict(v) for k, v in out.get("kinds", {}).items()}
            for kind, prefs in body.kinds.items():
                kinds.setdefault(kind, {}).update(prefs.model_dump(exclude_none=True))
            out["kinds"] = kinds
        if body.digest is not None:
            out["digest"] = body.digest
        if body.clear_quiet_hours:
            out.pop("quiet_hours", None)
        elif body.quiet_hours is not None:
            out["quiet_hours"] = body.quiet_hours.model_dump()
        if body.clear_nearby:
            out.pop("nearby", None)
        elif nearby_cell is not None:
            out["nearby"] = {"cell": nearby_cell}
        return Preferences(out)

    def public(self) -> dict[str, Any]:
        """The shape of GET: every kind with its effective values."""
        out: dict[str, Any] = {
            "email": self.channel_on("email"),
            "push": self.channel_on("push"),
            "digest": self.digest(),
            "kinds": {
                kind: {
                    "inapp": self._kind_value(kind, "inapp"),
                    "email": self._kind_value(kind, "email"),
                    "push": self._kind_value(kind, "push"),
                }
                for kind in KINDS
            },
        }
        if (quiet := self.quiet()) is not None:
            out["quiet_hours"] = quiet.model_dump()
        if (cell := self.nearby_cell()) is not None:
            out["nearby"] = {"cell": cell}
        return out

    def _kind_value(self, kind: str, channel: str) -> bool:
        mine = self.stored.get("kinds", {}).get(kind, {}).get(channel)
        return bool(getattr(KINDS[kind], channel) if mine is None else mine)


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(quiet: QuietHours | None, now: datetime) -> datetime | None:
    """When the quiet window ``now`` falls in ends (UTC), or None outside it. ``start == end``
    is an empty window."""
    if quiet is None:
        return None
    local = now.astimezone(zone(quiet.tz))
    start, end = _hhmm(quiet.start), _hhmm(quiet.end)
    clock = local.time().replace(second=0, microsecond=0, tzinfo=None)
    if start == end:
        return None
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.astimezone(UTC)


# -- unsubscribe links (RFC 8058) ---------------------------------------------------------------
def unsubscribe_token(key: bytes, user_id: str, scope: str) -> str:
    """A signature of (user, scope): ``scope`` is a kind, or ``all`` for every email."""
    mac = hmac.new(key, f"unsubscribe|{user_id}|{scope}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode().rstrip("=")


def check_unsubscribe(key: bytes, user_id: str, scope: str, token: str) -> None:
    """``bad_request`` unless ``token`` signs (user, scope) with ``key``."""
    if scope != "all" and scope not in KINDS:
        raise BadRequest("unknown unsubscribe scope")
    if not hmac.compare_digest(unsubscribe_token(key, user_id, scope), token):
        raise BadRequest("this unsubscribe link is not valid")


def unsubscribe_body(scope: str) -> SettingsBody:
    """The preference change an unsubscribe link makes: every email, or one kind's."""
    if scope == "all":
        return SettingsBody(email=False)
    return SettingsBody(kinds={scope: KindPrefs(email=False)})


def rate_window(now: datetime) -> str:
    """The hour a sent notification counts against (the per-user, per-channel cap)."""
    return now.strftime("%Y%m%d%H")
