from __future__ import annotations


class UsufructError(Exception):
    """The one error base of the hub's apps: ``status``, ``code``, ``message`` and ``fields``
    are the API's answer, mapped once by ``marketplace.api_errors.exception_handler``.

    It lives in the lowest app (the ledger) so that every app above raises its own
    subclasses without importing upwards.
    """

    status = 400
    code = "invalid"

    def __init__(
        self, message: str = "", *, fields: dict[str, list[str]] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code is not None:
            self.code = code


class LedgerError(UsufructError):
    """Base of ledger errors."""

    code = "ledger_error"


class LedgerConflict(LedgerError):
    """The event id exists with a different body (the caller reused an id)."""

    status = 409
    code = "conflict"


class ProofUnavailable(LedgerError):
    """A proof was asked for sizes or entries the log does not (yet) have: there is no such
    signed tree to prove against, so the API answers 404."""

    status = 404
    code = "proof_unavailable"


class TreeCorrupt(LedgerError):
    """Stored Merkle hashes disagree with the entries: someone wrote around the triggers."""

    status = 500
    code = "tree_corrupt"


class CheckpointRefused(LedgerError):
    """The hub will not sign a tree head it cannot reconcile with the previous one."""

    status = 500
    code = "checkpoint_refused"


class CosignatureRejected(LedgerError):
    """A posted cosignature is malformed, from an unknown witness, or does not verify."""

    code = "cosignature_rejected"
