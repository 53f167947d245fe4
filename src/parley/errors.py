"""Errors every face knows how to show.

Services raise these; the CLI turns them into a message and exit code 2, the API into a JSON
4xx naming the record and field. Nothing else should escape a service for bad input.
"""

from __future__ import annotations


class ParleyError(Exception):
    """Base class: a failure the user can act on."""


class InvalidInput(ParleyError):
    """Bad input: names where it is (file/record/row) and which field, so it can be fixed.

    record: what was being read, e.g. ``loans.csv row 17`` or ``request.channel``; may be empty.
    field: the field or column at fault; may be empty when the whole record is wrong.
    """

    def __init__(self, message: str, *, record: str = "", field: str = "") -> None:
        self.message = message
        self.record = record
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ", ".join(
            p for p in (self.record, f"field {self.field!r}" if self.field else "") if p
        )
        return f"{where}: {self.message}" if where else self.message


class InvalidInputs(InvalidInput):
    """Several bad records found in one pass (an import reports them together)."""

    def __init__(self, errors: list[InvalidInput]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, record=first.record, field=first.field)

    def __str__(self) -> str:
        lines = [InvalidInput.__str__(e) for e in self.errors]
        return "\n".join(lines)


class NotFound(ParleyError):
    """The thing does not exist, or the caller may not know that it does (same answer)."""


class Conflict(ParleyError):
    """The request lost a race or contradicts the current state (e.g. a superseded proposal)."""


class Forbidden(ParleyError):
    """The caller is known but may not do this."""
