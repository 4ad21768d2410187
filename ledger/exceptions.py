from __future__ import annotations


class LedgerError(Exception):
    """Base of ledger errors; ``status`` and ``code`` give the API's answer."""

    status = 400
    code = "ledger_error"


class LedgerConflict(LedgerError):
    """The event id exists with a different body (the caller reused an id)."""

    status = 409
    code = "conflict"


class ProofUnavailable(LedgerError):
    """A proof was asked for sizes or entries the log does not (yet) have."""

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
