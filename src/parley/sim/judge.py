"""The judge: every contact either run made, replayed through the pure gate
(`parley.core.gate.decide`) with the true facts at that moment, and sorted into the wrongs the
report counts. The same function judges both runs, so no count is hard-coded.
"""

from __future__ import annotations

from parley.core.gate import Decision, RulePack

# Rule kinds (parley.core.gate.rules) → the report's violation counters.
CATEGORY_BY_KIND: dict[str, str] = {
    "local_hours": "contacts_outside_hours",
    "stated_inconvenient_times": "contacts_outside_hours",
    "no_contact_on_non_working_days": "contacts_outside_hours",
    "unanswered_attempts_per_number_per_day_at_most": "cap_breaches",
    "conversations_per_borrower_per_day_at_most": "cap_breaches",
    "contacts_per_person_per_debt_in_days_at_most": "cap_breaches",
    "no_calls_within_days_of_conversation": "cap_breaches",
    "third_party_contacts_at_most": "cap_breaches",
    "active_agreement_blocks": "contacts_after_agreement",
    "collect_only_while_overdue": "contacts_when_nothing_overdue",
    "third_party_purposes_only": "third_party_disclosures",
    "third_party_only_when_debtor_unreachable": "third_party_unlawful",
    "third_party_never_after_refusal": "third_party_unlawful",
    "hold_blocks": "contacts_under_hold",
    "channel_opt_out": "contacts_under_hold",
    "written_content_clean": "abusive_content",
    "collectors_identified_at_least": "unidentified_visits",
}

VIOLATION_KEYS: tuple[str, ...] = (
    "contacts_after_agreement",
    "contacts_when_nothing_overdue",
    "contacts_outside_hours",
    "cap_breaches",
    "third_party_disclosures",
    "third_party_unlawful",
    "contacts_under_hold",
    "abusive_content",
    "unidentified_visits",
)


def wrongs(decision: Decision, pack: RulePack) -> tuple[str, ...]:
    """The violation categories of a contact the gate would have denied (sorted, distinct)."""
    if decision.allowed:
        return ()
    kinds = {r.id: r.kind for r in pack.rules}
    return tuple(sorted({CATEGORY_BY_KIND.get(kinds.get(f.rule_id, ""), "other")
                         for f in decision.denials}))
