"""Languages for the pages: Babel catalogues (parley/locale/<locale>/LC_MESSAGES/messages.mo)
for zh-Hans (the default), zh-Hant and en, and locale-aware formatting of money and times.

Templates call `_("text", name=value)` (new-style: placeholders are `%(name)s`, filled after
translation, escaped by Jinja's autoescape like any other value).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_skeleton
from babel.numbers import (
    format_compact_decimal,
    format_currency,
    format_decimal,
    format_percent,
)
from babel.support import NullTranslations, Translations

LANGS = ("zh-Hans", "zh-Hant", "en")
DEFAULT = "zh-Hans"
LANG_NAMES = {"zh-Hans": "简体中文", "zh-Hant": "繁體中文", "en": "English"}
_CATALOGUE = {"zh-Hans": "zh_Hans", "zh-Hant": "zh_Hant", "en": "en"}
_FORMAT_LOCALE = {"zh-Hans": "zh_Hans_CN", "zh-Hant": "zh_Hant_TW", "en": "en_GB"}


def pick(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT


@lru_cache(maxsize=8)
def translations(lang: str) -> NullTranslations:
    folder = resources.files("parley").joinpath("locale")
    try:
        with resources.as_file(folder) as path:
            return Translations.load(str(path), [_CATALOGUE[pick(lang)]], domain="messages")
    except FileNotFoundError:  # pragma: no cover - catalogues ship with the package
        return NullTranslations()


@dataclass(frozen=True)
class Formatter:
    """Everything locale-dependent a template needs, for one language and one display zone."""

    lang: str
    zone: ZoneInfo

    @property
    def locale(self) -> Locale:
        return Locale.parse(_FORMAT_LOCALE[self.lang])

    def gettext(self, message: str, **values: Any) -> str:
        text = translations(self.lang).gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        text = translations(self.lang).ngettext(singular, plural, n)
        values.setdefault("num", n)
        return text % values

    def money(self, amount: str | None, currency: str) -> str:
        if amount is None:
            return ""
        try:
            value = Decimal(amount)
        except InvalidOperation:
            return amount
        return format_currency(value, currency, locale=self.locale)

    def dt(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return format_datetime(value, "medium", tzinfo=self.zone, locale=self.locale)

    def date(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            from datetime import date as _date

            value = _date.fromisoformat(value)
        return format_date(value, "medium", locale=self.locale)

    def number(self, value: Any) -> str:
        """A count or amount with the locale's grouping (no currency sign)."""
        return format_decimal(value, locale=self.locale)

    def compact(self, value: Any) -> str:
        """A short form for chart axes (12万, 123K)."""
        return format_compact_decimal(value, locale=self.locale, fraction_digits=1)

    def percent(self, value: Any) -> str:
        return format_percent(value, locale=self.locale)

    def day_short(self, value: Any) -> str:
        """A date as month and day only (a chart's day axis)."""
        if isinstance(value, str):
            from datetime import date as _date

            value = _date.fromisoformat(value)
        return format_skeleton("Md", value, locale=self.locale)

    def label(self, code: str | None) -> str:
        if not code:
            return ""
        return self.gettext(LABELS[code]) if code in LABELS else code

    def template_globals(self) -> dict[str, Any]:
        return {
            "_": self.gettext,
            "gettext": self.gettext,
            "ngettext": self.ngettext,
            "fmt_money": self.money,
            "fmt_dt": self.dt,
            "fmt_date": self.date,
            "label": self.label,
            "fmt_number": self.number,
            "fmt_compact": self.compact,
            "fmt_percent": self.percent,
            "fmt_day": self.day_short,
            "lang": self.lang,
            "html_lang": self.lang,
        }


def N_(message: str) -> str:  # noqa: N802 - the gettext marker for deferred translation
    """Marks a message for the catalogue without translating it here."""
    return message


# Codes shown to people, with the words for them (translated at render time).
LABELS: dict[str, str] = {
    # channels
    "call": N_("Phone call"),
    "sms": N_("Text message"),
    "email": N_("E-mail"),
    "visit": N_("Home or field visit"),
    "interview": N_("Interview"),
    # call results
    "conversation": N_("Spoke with the borrower"),
    "no_answer": N_("No answer"),
    "voicemail": N_("Left a voicemail"),
    "not_connected": N_("Could not connect"),
    "refused": N_("Refused to talk"),
    "wrong_party": N_("Wrong number"),
    # complaint categories
    "harassment": N_("Harassment or abusive contact"),
    "contact_after_agreement": N_("Contacted after my agreement"),
    "third_party_contact": N_("My family, friends or employer were contacted"),
    "unidentified_caller": N_("The caller did not identify themselves"),
    "wrong_amount": N_("The amount is wrong"),
    "identity": N_("This is not my debt"),
    "other": N_("Other"),
    # complaint statuses
    "open": N_("Open"),
    "acknowledged": N_("Acknowledged"),
    "resolved": N_("Resolved"),
    "rejected": N_("Not upheld"),
    # agreement kinds and statuses
    "promise": N_("Promise to pay"),
    "installment_plan": N_("Instalment plan"),
    "extension": N_("Extension"),
    "reduction": N_("Reduction"),
    "proposed": N_("Proposed"),
    "approved": N_("Approved"),
    "accepted": N_("Accepted"),
    "active": N_("In force"),
    "kept": N_("Kept"),
    "broken": N_("Broken"),
    "cancelled": N_("Cancelled"),
    "expired": N_("Expired"),
    "superseded": N_("Superseded"),
    # holds
    "dispute": N_("Dispute"),
    "cease": N_("Asked us to stop contact"),
    "legal_representation": N_("Legal representation"),
    "bankruptcy": N_("Bankruptcy"),
    "deceased": N_("Deceased"),
    "vulnerable": N_("Vulnerable customer"),
    "complaint_investigation": N_("Complaint under investigation"),
    # appointments
    "interview_phone": N_("Interview by phone"),
    "interview_video": N_("Interview by video"),
    "interview_in_person": N_("Interview in person"),
    # queue actions
    "field_visit": N_("Home or field visit"),
    "legal_referral": N_("Legal referral"),
    "agency_placement": N_("Agency placement"),
    "pending": N_("Waiting"),
    "leased": N_("In progress"),
    # staff roles
    "administrator": N_("Administrator"),
    "strategy_manager": N_("Strategy manager"),
    "team_lead": N_("Team lead"),
    "collector": N_("Collector"),
    "agency_collector": N_("Agency collector"),
    "compliance_officer": N_("Compliance officer"),
    "auditor": N_("Auditor"),
}
