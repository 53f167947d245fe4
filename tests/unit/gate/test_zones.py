"""Candidate time zones: declared, else address, else phone numbers; unknown is empty."""

from parley.adapters.zones import candidate_zones


def test_declared_zone_wins():
    assert candidate_zones("Europe/Paris", "US", "NY", ["+12125550100"]) == ("Europe/Paris",)


def test_address_before_phones():
    assert candidate_zones(None, "CN", None, ["+12125550100"]) == ("Asia/Shanghai",)
    assert candidate_zones(None, "us", "ny", []) == ("America/New_York",)


def test_multi_zone_state_gives_every_zone():
    assert set(candidate_zones(None, "US", "TX", [])) == {"America/Chicago", "America/Denver"}


def test_phones_give_the_union_of_their_zones():
    zs = candidate_zones(None, None, None, ["+8613800138000", "+12125550100"])
    assert zs == ("Asia/Shanghai", "America/New_York")


def test_unknown_is_empty():
    assert candidate_zones(None, None, None, []) == ()
    assert candidate_zones("Etc/Unknown", "ZZ", None, ["not a number"]) == ()
    assert candidate_zones(None, "US", "ZZ", []) == ()
