"""Which address a request counts under: X-Forwarded-For only from a trusted proxy."""

from __future__ import annotations

import pytest

from parley.config import Settings, parse_networks
from parley.faces.web.auth import forwarded_client

TRUSTED = parse_networks("10.0.0.0/8, 192.0.2.1, 2001:db8::/32")


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert forwarded_client("10.0.0.5", "203.0.113.7", ()) == "10.0.0.5"


def test_a_header_from_an_untrusted_peer_is_ignored() -> None:
    assert forwarded_client("198.51.100.9", "203.0.113.7", TRUSTED) == "198.51.100.9"


def test_a_trusted_proxy_vouches_for_the_address_it_saw() -> None:
    assert forwarded_client("10.0.0.5", "203.0.113.7", TRUSTED) == "203.0.113.7"


def test_the_walk_stops_at_the_first_untrusted_hop_so_a_forged_left_part_is_never_used() -> None:
    forged = "1.2.3.4, 203.0.113.7, 10.1.1.1"
    assert forwarded_client("10.0.0.5", forged, TRUSTED) == "203.0.113.7"


def test_a_malformed_hop_stops_at_the_last_trusted_one() -> None:
    assert forwarded_client("10.0.0.5", "203.0.113.7, not-an-ip", TRUSTED) == "10.0.0.5"
    assert forwarded_client("10.0.0.5", "garbage, 10.2.2.2", TRUSTED) == "10.2.2.2"


def test_ipv6_and_ipv4_mapped_peers() -> None:
    assert forwarded_client("2001:db8::1", "2001:db9::7", TRUSTED) == "2001:db9::7"
    assert forwarded_client("::ffff:10.0.0.5", "203.0.113.7", TRUSTED) == "203.0.113.7"


def test_only_proxies_in_the_chain_means_the_leftmost() -> None:
    assert forwarded_client("10.0.0.5", "10.9.9.9, 192.0.2.1", TRUSTED) == "10.9.9.9"


def test_the_setting_refuses_what_is_not_an_address_or_network() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8,::1").trusted_proxies == "10.0.0.0/8,::1"
    with pytest.raises(ValueError, match="not an IP"):
        Settings(trusted_proxies="10.0.0.0/8,proxy.internal")
