"""Purpose categories a buyer declares on an order, and the operations each one covers.

Purpose limitation (GDPR Art. 5(1)(b), PIPL Art. 6): data bought for one purpose is not
used for another. A right's declared category names the kinds of computation that purpose
needs; a use whose operation falls outside it is flagged to the regulator (it is not
refused: the offer sold the operation, and only the authority can weigh the purpose).
A category not listed here is the buyer's own words; it covers any operation the right
permits and is flagged only as undeclared.
"""

from __future__ import annotations

PURPOSE_CATEGORIES: dict[str, frozenset[str]] = {
    # Scoring applicants: overlap and value checks, statistics, the joint model.
    "credit risk": frozenset({"stats", "psi", "psi_align", "value_preview", "hetero_lr"}),
    "fraud detection": frozenset({"stats", "psi", "psi_align", "value_preview", "hetero_lr"}),
    # Aggregates about a population; no model of individuals.
    "market research": frozenset({"stats", "psi"}),
    "marketing": frozenset({"stats", "psi", "value_preview"}),
    # Studies across institutions: statistics and models trained where the rows are.
    "research": frozenset({"stats", "psi", "psi_align", "homo_lr", "hetero_lr"}),
    "statistics": frozenset({"stats"}),
}


def covers(category: str, operation: str) -> bool | None:
    """Whether a declared category covers an operation: None for a category this list does not know."""
    known = PURPOSE_CATEGORIES.get(category.strip().lower())
    return None if known is None else operation in known
