"""Email over SMTP (``aiosmtplib``, ``HL_SMTP_URL``): builds a multipart message (text and
HTML), with RFC 8058 one-click unsubscribe headers when it has a link, and sends it.

An SMTP answer decides what happens next: 2xx sent; a 5xx reply (the address or message
refused for good) is permanent; a 4xx reply, a refused connection or a timeout is worth a
retry (the notifier backs off).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from cluster.config import Settings


@dataclass(frozen=True, slots=True)
class MailResult:
    """``sent``, ``retry`` (transient) or ``failed`` (permanent), with the server's reason."""

    outcome: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    unsubscribe_url: str | None = None


class Mailer:
    """One SMTP server's client; a connection per message (mail volume is small next to
    pushes and a pooled SMTP session would need its own keep-alive)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_url, "no SMTP server configured"
        parts = urlsplit(settings.smtp_url)
        self.tls = parts.scheme == "smtps"
        self.starttls = parse_qs(parts.query).get("starttls", ["0"])[0] in ("1", "true")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = settings.smtp_from
        self.timeout_s = settings.smtp_timeout_s
        self.sent = 0

    def build(self, mail: Mail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = mail.message_id
        if mail.unsubscribe_url:
            msg["List-Unsubscribe"] = f"<{mail.unsubscribe_url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        return msg

    async def send(self, mail: Mail) -> MailResult:
        try:
            await aiosmtplib.send(
                self.build(mail),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.tls,
                start_tls=self.starttls if not self.tls else None,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:  # every recipient refused: by code
            refused = exc.recipients[0] if exc.recipients else None
            code = refused.code if refused is not None else 450
            outcome = "failed" if 500 <= code < 600 else "retry"
            reason = refused.message if refused is not None else str(exc)
            return MailResult(outcome, f"SMTP {code}: {reason}"[:300])
        except aiosmtplib.SMTPResponseException as exc:
            outcome = "failed" if 500 <= exc.code < 600 else "retry"
            return MailResult(outcome, f"SMTP {exc.code}: {exc.message}"[:300])
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return MailResult("retry", f"{type(exc).__name__}: {exc}"[:300])
        self.sent += 1
        return MailResult("sent")


def message_id(delivery_id: int, domain: str = "hyperlocal") -> str:
    """Stable per delivery: a retry that reached the server twice is one message to a
    client that dedupes by Message-ID."""
    return f"<n{delivery_id}@{domain}>" if delivery_id else make_msgid(domain=domain)
