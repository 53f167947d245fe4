"""E-mail over SMTP (smtplib). The idempotency key becomes the Message-ID and an
``X-Idempotency-Key`` header; plain SMTP servers do not deduplicate, so ``idempotent`` is False
and the worker never re-sends an e-mail whose send may have happened (see docs/daily-run.md)."""

from __future__ import annotations

import hashlib
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate

from parley.adapters.channels.base import ChannelError, Message, ProviderReceipt


class _SMTP(smtplib.SMTP):
    """Remembers whether DATA was begun: from then on the server may hold the message, so a
    dropped connection or a timeout no longer means "not sent"."""

    data_begun = False

    def data(self, msg: bytes | str) -> tuple[int, bytes]:
        self.data_begun = True
        return super().data(msg)


class SmtpProvider:
    name = "smtp"
    channels = frozenset({"email"})
    idempotent = False

    def __init__(self, host: str, port: int, sender: str, *, timeout: float = 10.0,
                 username: str = "", password: str = "", starttls: bool = False) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.timeout, self.username, self.password, self.starttls = timeout, username, password, starttls

    def message_id(self, key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        domain = self.sender.rsplit("@", 1)[-1] or "parley.invalid"
        return f"<{digest}@{domain}>"

    def send(self, message: Message) -> ProviderReceipt:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = message.to
        msg["Subject"] = message.subject or "Parley"
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = self.message_id(message.idempotency_key)
        msg["X-Idempotency-Key"] = message.idempotency_key
        if message.reference:
            msg["X-Parley-Reference"] = message.reference
        for k, v in message.headers.items():
            msg[k] = v
        msg.set_content(message.body)
        smtp: _SMTP | None = None
        try:
            with _SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password)
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise ChannelError(f"recipient refused: {exc.recipients}", transient=False) from exc
        except smtplib.SMTPResponseException as exc:  # the server answered: it did not take it
            transient = 400 <= exc.smtp_code < 500
            raise ChannelError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", transient=transient) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            if smtp is not None and smtp.data_begun:
                # No answer after DATA began: the server may have the message. Sending it
                # again could deliver it twice, so it is not retried (a person checks).
                raise ChannelError(f"unconfirmed: the connection failed after the message was "
                                   f"handed over ({exc}); it may have been delivered",
                                   transient=False) from exc
            raise ChannelError(f"SMTP unavailable: {exc}", transient=True) from exc
        if refused:
            raise ChannelError(f"recipient refused: {refused}", transient=False)
        return ProviderReceipt(self.name, msg["Message-ID"], message.idempotency_key,
                               datetime.now(UTC), detail="250 accepted")
