"""The operations a usage right can permit, and a node's policy can allow: part of the protocol.

Each is implemented by one algorithm on the hub and the nodes (``compute.algorithms``,
whose registry a test holds to this list); the marketplace sells rights to these names
without depending on the code that runs them.
"""

from __future__ import annotations

OPERATIONS: dict[str, str] = {
    "stats": "Count, sum, mean and variance of a numeric column, summed under Paillier.",
    "psi": "Noised size of the overlap between your ID list and a provider's, by Diffie–Hellman PSI.",
    "psi_align": "Align your records with providers' by PSI: each node learns which of its own records are shared.",
    "homo_lr": (
        "Horizontal logistic regression (FedAvg) across providers with the same columns; updates summed under Paillier."
    ),
    "value_preview": ("Information value and AUC of a provider's features against your label, on the overlap, noised."),
    "hetero_lr": "Train a logistic regression on your labels and providers' features, aligned by PSI; rows never move.",
}
