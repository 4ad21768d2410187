"""Differential-privacy primitives shared by algorithms. Pure; randomness injectable.

Noise is integer-valued (discrete Laplace), so values in fixed point stay integers and
can be added under Paillier without rounding a float that could leak the true value.
"""

from __future__ import annotations

import math
import random


def discrete_laplace(epsilon: float, rng: random.Random) -> int:
    """Z with P(Z = k) ∝ exp(-ε|k|): the difference of two geometric variables.

    With U uniform on (0, 1], floor(ln U / ln q) is geometric: P(G ≥ k) = q^k, q = e^-ε.
    For a query of sensitivity Δ (integer units) call it with ε/Δ.
    """
    log_q = -epsilon

    def geometric() -> int:
        return math.floor(math.log(1.0 - rng.random()) / log_q)

    return geometric() - geometric()
