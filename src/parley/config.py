"""Settings from the environment (prefix PARLEY_). Built by the faces, never at import time."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only defaults. `Settings` refuses them when PARLEY_ENV=production.
_DEV_SECRET = "dev-only-secret-change-me"
_DEV_KEY = "dev1:ZGV2LW9ubHkta2V5LTMyLWJ5dGVzLWxvbmctISEhISE="  # 32 bytes, base64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def parse_networks(setting: str) -> tuple[Network, ...]:
    """A comma list of IPs/CIDRs ('10.0.0.0/8, 192.0.2.1') as networks; ValueError naming the
    first part that is neither. The one parser of PARLEY_TRUSTED_PROXIES: Settings validates
    with it and the web face reads its result, so the two cannot disagree. Cached on the text
    because the face asks on every request (a failure is not cached, so it raises each time)."""
    networks = []
    for part in setting.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or CIDR: {part.strip()!r}") from None
    return tuple(networks)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_file=None, extra="ignore")

    env: str = Field(default="development", description="development, test or production")
    database_url: str = Field(default="sqlite:///./var/parley.db")
    secret_key: SecretStr = Field(
        default=SecretStr(_DEV_SECRET), description="signs sessions, receipts, webhooks"
    )
    encryption_keys: SecretStr = Field(
        default=SecretStr(_DEV_KEY),
        description="'kid:base64key,…' — AES-256-GCM keys for personal data; the first encrypts, all decrypt",
    )
    index_key: SecretStr = Field(
        default=SecretStr(_DEV_SECRET + "-index"), description="HMAC key for blind indexes"
    )
    business_timezone: str = Field(
        default="Asia/Shanghai", description="the lender's zone for business dates"
    )
    default_jurisdiction: str = Field(
        default="CN", description="rule pack for borrowers without one"
    )
    grace_days: int = Field(default=0, ge=0, le=60)
    buckets: str = Field(default="M0:0-0,M1:1-30,M2:31-60,M3:61-90,M4:91-120,M5:121-150,M6+:151-")
    waterfall: str = Field(default="penalty,fee,interest,principal;installment-major")
    complaint_ack_business_days: int = Field(default=1, ge=0, le=30, description="acknowledge a complaint within")
    complaint_resolve_business_days: int = Field(default=15, ge=1, le=90, description="resolve a complaint within")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_sender: str = "collections@parley.example"
    sms_provider: str = Field(default="console", description="console or http")
    sms_webhook_url: str = ""
    var_dir: Path = Path("./var")
    trusted_proxies: str = Field(
        default="",
        description="comma list of IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed "
        "(for rate limits and session records); empty = the direct peer is the client",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        """PARLEY_TRUSTED_PROXIES, parsed. A property over the cached parser rather than a
        cached_property: pydantic's model_copy(update=...) copies a cached_property's value
        along with the fields, so a copy with other proxies would keep the old networks."""
        return parse_networks(self.trusted_proxies)

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.env == "production":
            for name in ("secret_key", "encryption_keys", "index_key"):
                value = getattr(self, name).get_secret_value()
                if value in (_DEV_SECRET, _DEV_KEY, _DEV_SECRET + "-index"):
                    raise ValueError(f"PARLEY_{name.upper()} must be set in production")
        return self
