"""What the SMS store refuses, each answered by the HTTP layer as Close answers it."""

from __future__ import annotations

from typing import Any

# flask-mongorest's answer when a record at the offset was deleted mid-query (tap-closeio).
DELETED_MID_QUERY_MESSAGE = "Empty query: Document has been deleted."


class ValidationError(Exception):
    """400 with Close's `{"errors": [...], "field-errors": {...}}` body."""

    def __init__(self, field_errors: dict[str, str], errors: list[str] | None = None) -> None:
        super().__init__(field_errors or errors)
        self.field_errors = field_errors
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        """The response body."""
        return {"errors": self.errors, "field-errors": self.field_errors}


class NotFound(Exception):
    """404 with `{"error": "Empty query: ... matching query does not exist."}`."""

    def __init__(self, model: str = "Activity") -> None:
        super().__init__(f"Empty query: {model} matching query does not exist.")


class Forbidden(Exception):
    """403: the key may not do this."""


class DeletedInPage(Exception):
    """A list page holds a deleted SMS that Close's list index still has: 404 with
    DELETED_MID_QUERY_MESSAGE (flask-mongorest's answer, met by tap-closeio)."""
