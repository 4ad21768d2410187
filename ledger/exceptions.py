from __future__ import annotations


class LedgerError(Exception):
    """Base of ledger errors."""


class LedgerConflict(LedgerError):
    """The event id exists with a different body (the caller reused an id)."""
