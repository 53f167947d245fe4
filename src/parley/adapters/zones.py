"""Candidate time zones for a person: declared zone, else address, else phone numbers.

The gate needs every zone the person might be in (a contact must be lawful in all of them);
an empty answer means "unknown", on which every time-based rule fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

_UNKNOWN = "Etc/Unknown"

_ET, _CT, _MT, _PT = "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"

# Country -> zones, for single-zone countries we support (multi-zone countries go by region).
COUNTRY_ZONES: dict[str, tuple[str, ...]] = {
    "CN": ("Asia/Shanghai",),
    "GB": ("Europe/London",),
    "IN": ("Asia/Kolkata",),
}

# US state/territory -> its zone(s); a state split between zones gives all of them.
US_STATE_ZONES: dict[str, tuple[str, ...]] = {
    **{s: (_ET,) for s in ("CT", "DE", "DC", "GA", "ME", "MD", "MA", "NH", "NJ", "NY", "NC",
                           "OH", "PA", "RI", "SC", "VT", "VA", "WV")},
    "FL": (_ET, _CT),
    "IN": ("America/Indiana/Indianapolis", _CT),
    "KY": (_ET, _CT),
    "MI": ("America/Detroit", "America/Menominee"),
    "TN": (_CT, _ET),
    **{s: (_CT,) for s in ("AL", "AR", "IL", "IA", "LA", "MN", "MS", "MO", "OK", "WI")},
    "TX": (_CT, _MT),
    "KS": (_CT, _MT),
    "NE": (_CT, _MT),
    "ND": (_CT, _MT),
    "SD": (_CT, _MT),
    **{s: (_MT,) for s in ("CO", "MT", "NM", "UT", "WY")},
    "AZ": ("America/Phoenix", _MT),
    "ID": ("America/Boise", _PT),
    "OR": (_PT, "America/Boise"),
    "NV": (_PT,),
    "CA": (_PT,),
    "WA": (_PT,),
    "AK": ("America/Anchorage", "America/Adak"),
    "HI": ("Pacific/Honolulu",),
    "PR": ("America/Puerto_Rico",),
    "GU": ("Pacific/Guam",),
    "VI": ("America/St_Thomas",),
    "AS": ("Pacific/Pago_Pago",),
    "MP": ("Pacific/Saipan",),
}


def _valid_zone(name: str) -> bool:
    if not name or name == _UNKNOWN:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zones_for_address(country: str | None, region: str | None) -> tuple[str, ...]:
    """Zones for an address's country (ISO 3166 alpha-2) and region (US state code)."""
    if not country:
        return ()
    c = country.strip().upper()
    if c == "US":
        return US_STATE_ZONES.get((region or "").strip().upper().removeprefix("US-"), ())
    return COUNTRY_ZONES.get(c, ())


def zones_for_phones(phones: Iterable[str]) -> tuple[str, ...]:
    """Union (in first-seen order) of the zones ``phonenumbers`` gives for each E.164 number."""
    out: list[str] = []
    for raw in phones:
        try:
            num = phonenumbers.parse(raw, None)
        except phonenumbers.NumberParseException:
            continue
        for z in pn_timezone.time_zones_for_number(num):
            if _valid_zone(z) and z not in out:
                out.append(z)
    return tuple(out)


def candidate_zones(declared: str | None, country: str | None, region: str | None,
                    phones: Iterable[str]) -> tuple[str, ...]:
    """Declared zone first, else from the address, else from the phones; () = unknown."""
    if declared and _valid_zone(declared):
        return (declared,)
    by_address = zones_for_address(country, region)
    if by_address:
        return by_address
    return zones_for_phones(phones)
