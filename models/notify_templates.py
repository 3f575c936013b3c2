"""What a notification says: the email (subject, text, HTML) and the push payload of each kind.
Pure: the notifier gives the data and the names it looked up.

Unknown kinds still render (a generic line), so a new producer never makes a delivery fail.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Context:
    """What a template may use besides the event's data."""

    recipient_name: str
    actor_name: str
    app_url: str
    unsubscribe_url: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    link: str


def _order_line(data: dict[str, Any]) -> str:
    order = data.get("order") or {}
    return f"order {order.get('id', '?')} is now {order.get('status', 'updated')}"


def _account_line(label: str) -> Callable[[dict[str, Any], Context], str]:
    def line(data: dict[str, Any], ctx: Context) -> str:
        return f"{label}: {data.get('link', '')} (valid for {data.get('valid_min', 60)} minutes)"

    return line


_LINES: dict[str, Callable[[dict[str, Any], Context], str]] = {
    "comment.created": lambda d, c: f"{c.actor_name} replied to your post",
    "post.liked": lambda d, c: f"{c.actor_name} liked your post",
    "user.followed": lambda d, c: f"{c.actor_name} started following you",
    "post.shared": lambda d, c: f"{c.actor_name} shared your post",
    "room.opened": lambda d, c: "someone opened a direct chat with you",
    "room.added": lambda d, c: (
        f"you were added to {(d.get('room') or {}).get('title') or 'a room'}"
    ),
    "chat.message": lambda d, c: (
        f"{c.actor_name}: {str((d.get('message') or {}).get('text', ''))[:140]}"
    ),
    "order.status": lambda d, c: "Your " + _order_line(d),
    "order.vendor": lambda d, c: "Your shop's " + _order_line(d),
    "dispute.updated": lambda d, c: (
        f"dispute {(d.get('dispute') or {}).get('id', '?')} is now "
        f"{(d.get('dispute') or {}).get('status', 'updated')}"
    ),
    "appeal.decided": lambda d, c: "your appeal was decided",
    "promotion": lambda d, c: f"{c.actor_name}: {d.get('title', '')} — {d.get('text', '')}",
    "account.password_reset": _account_line("Reset your password"),
    "account.email_verify": _account_line("Confirm your email address"),
    "account.signup_attempt": lambda d, c: (
        "Someone tried to create an account with your email address. You already have"
        " one: if it was you, sign in, or reset your password at"
        f" {d.get('link', '')}. If it was not you, nothing changed; no account was"
        " given your address."
    ),
}

_SUBJECTS: dict[str, str] = {
    "order.status": "Your order was updated",
    "order.vendor": "An order of your shop was updated",
    "account.password_reset": "Reset your password",
    "account.email_verify": "Confirm your email address",
    "account.signup_attempt": "Someone tried to sign up with your email address",
    "digest": "Your Hyperlocal digest",
    "promotion": "A promotion near you",
}


def folded_line(line: str, count: int) -> str:
    """``Ana liked your post`` folded with ``count`` rows: ``Ana and 11 others liked ...``."""
    if count <= 1:
        return line
    name, _, rest = line.partition(" ")
    others = count - 1
    return f"{name} and {others} other{'s' if others > 1 else ''} {rest}"


def render(kind: str, data: dict[str, Any], ctx: Context) -> Rendered:
    """The one line (and a subject) a notification of ``kind`` says."""
    if kind == "digest":
        lines = [str(line) for line in data.get("lines", [])]
        more = int(data.get("count", len(lines))) - len(lines)
        text = "\n".join(f"- {line}" for line in lines) + (
            f"\n- and {more} more" if more > 0 else ""
        )
        return Rendered(_SUBJECTS["digest"], text, ctx.app_url)
    if kind.startswith("moderation."):
        line = f"moderation: {kind.split('.', 1)[1]} ({data.get('reason', '')})"
    else:
        line = _LINES.get(kind, lambda d, c: f"you have a new notification ({kind})")(data, ctx)
    subject = _SUBJECTS.get(kind) or (line if len(line) <= 78 else line[:75] + "...")
    return Rendered(subject, line, ctx.app_url)


def email_bodies(rendered: Rendered, ctx: Context) -> tuple[str, str]:
    """(text, HTML) of an email: the line, the link, and the unsubscribe footer."""
    foot_text = foot_html = ""
    if ctx.unsubscribe_url:
        foot_text = f"\n\n--\nUnsubscribe: {ctx.unsubscribe_url}\n"
        link = html.escape(ctx.unsubscribe_url)
        foot_html = f'<p style="font-size:small"><a href="{link}">Unsubscribe</a></p>'
    text = f"Hi {ctx.recipient_name},\n\n{rendered.text}\n\n{rendered.link}{foot_text}"
    body = (
        f"<p>Hi {html.escape(ctx.recipient_name)},</p>"
        f"<p>{html.escape(rendered.text).replace(chr(10), '<br>')}</p>"
        f'<p><a href="{html.escape(rendered.link)}">Open Hyperlocal</a></p>{foot_html}'
    )
    return text, f"<!doctype html><html><body>{body}</body></html>"


def push_payload(kind: str, rendered: Rendered, delivery_id: int) -> dict[str, Any]:
    """The JSON a service worker receives (encrypted, RFC 8291)."""
    return {
        "id": delivery_id,
        "kind": kind,
        "title": "Hyperlocal",
        "body": rendered.text,
        "url": rendered.link,
    }
