"""Rate limits behind a reverse proxy: X-Forwarded-For counts only when the direct peer is one
of PARLEY_TRUSTED_PROXIES, so a client cannot dodge the per-address limit by forging it."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_network

import pytest
from fastapi.testclient import TestClient

from parley.config import Settings
from parley.faces.api.app import create_app
from parley.services.auth import Policy
from parley.services.context import Context
from tests.integration.web_data import World, pre_csrf

POLICY = Policy(signin_per_ip=2)


def _app(world: World, trusted: str):  # type: ignore[no-untyped-def]
    settings = world.ctx.settings.model_copy(update={"trusted_proxies": trusted})
    ctx = Context(world.ctx.db, settings, world.ctx.clock)
    return create_app(ctx, otp_sender=world.send, auth_policy=POLICY)


def _wrong_password(c: TestClient, username: str, forwarded_for: str) -> int:
    token = pre_csrf(c)
    r = c.post("/signin", headers={"X-Forwarded-For": forwarded_for},
               data={"username": username, "password": "wrong-wrong-wrong", "csrf_token": token})
    return r.status_code


def _client(app, peer: str) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, base_url="http://testserver", follow_redirects=False, client=(peer, 40000))


def test_behind_a_trusted_proxy_each_client_address_has_its_own_limit(world: World) -> None:
    app = _app(world, "10.0.0.0/8")
    proxy = _client(app, "10.0.0.5")
    assert [_wrong_password(proxy, u, "203.0.113.7") for u in ("collector", "agent", "auditor")] == [401, 401, 429]
    # another client behind the same proxy is not punished for the first one's tries
    assert _wrong_password(proxy, "collector2", "203.0.113.8") == 401
    # and the first cannot escape by prepending a forged address of its own
    assert _wrong_password(proxy, "collector2", "198.51.100.1, 203.0.113.7") == 429


def test_from_an_untrusted_peer_the_header_is_ignored_and_the_peer_is_limited(world: World) -> None:
    for trusted in ("", "10.0.0.0/8"):
        world.ctx.clock.advance(timedelta(minutes=16))  # type: ignore[attr-defined]  # a fresh window
        app = _app(world, trusted)
        direct = _client(app, "198.51.100.9" if trusted else "10.0.0.5")
        codes = [_wrong_password(direct, u, f"203.0.113.{i}")
                 for i, u in enumerate(("collector", "agent", "auditor"))]
        assert codes == [401, 401, 429], trusted



def test_settings_parse_the_proxies_once_and_a_copy_with_other_proxies_has_its_own() -> None:
    settings = Settings(trusted_proxies="10.0.0.0/8, 192.0.2.1")
    assert settings.trusted_proxy_networks == (ip_network("10.0.0.0/8"), ip_network("192.0.2.1/32"))
    # what the web face reads; a copy (as the tests above make) must not keep the old networks
    assert settings.model_copy(update={"trusted_proxies": "::1"}).trusted_proxy_networks == (
        ip_network("::1/128"),)
    assert Settings(trusted_proxies="").trusted_proxy_networks == ()
    with pytest.raises(ValueError, match="not an IP address or CIDR: 'proxy.internal'"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.internal")
