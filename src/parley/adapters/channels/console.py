"""The console provider for the demo: writes each message to a stream; idempotent in-process."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import TextIO

from parley.adapters.channels.base import Message, ProviderReceipt


class ConsoleProvider:
    name = "console"
    channels = frozenset({"sms", "email"})
    idempotent = True

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._sent: dict[str, ProviderReceipt] = {}
        self._lock = threading.Lock()
        self.messages: list[Message] = []  # what was delivered, in order (tests, demo)

    def send(self, message: Message) -> ProviderReceipt:
        with self._lock:
            seen = self._sent.get(message.idempotency_key)
            if seen is not None:
                return ProviderReceipt(seen.provider, seen.message_id, seen.idempotency_key,
                                       datetime.now(UTC), duplicate=True, detail="duplicate key")
            n = len(self.messages) + 1
            self.messages.append(message)
            receipt = ProviderReceipt(self.name, f"console-{n}", message.idempotency_key,
                                      datetime.now(UTC))
            self._sent[message.idempotency_key] = receipt
        stream = self._stream or sys.stdout
        subject = f" [{message.subject}]" if message.subject else ""
        stream.write(f"[{message.channel} → {message.to}]{subject} {message.body}\n")
        return receipt
