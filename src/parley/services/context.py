"""What every service needs, wired in one place: the database, the clock, settings, keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from zoneinfo import ZoneInfo

from parley.adapters.clock import Clock, SystemClock
from parley.adapters.crypto import KeyRing
from parley.config import Settings
from parley.core.delinquency import BucketScheme
from parley.core.waterfall import Waterfall
from parley.store.db import Database


@dataclass
class Context:
    db: Database
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, clock: Clock | None = None) -> Context:
        settings = settings or Settings()
        return cls(Database(settings.database_url), settings, clock or SystemClock())

    @cached_property
    def keyring(self) -> KeyRing:
        return KeyRing(
            self.settings.encryption_keys.get_secret_value(),
            self.settings.index_key.get_secret_value(),
        )

    @cached_property
    def business_zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.business_timezone)

    @cached_property
    def buckets(self) -> BucketScheme:
        return BucketScheme.parse(self.settings.buckets)

    @cached_property
    def waterfall(self) -> Waterfall:
        return Waterfall.parse(self.settings.waterfall)

    def today(self):  # type: ignore[no-untyped-def]
        """The business date now, in the lender's zone."""
        return self.clock.now().astimezone(self.business_zone).date()
