"""The discrete Laplace sampler (compute.algorithms.dp) against its exact distribution.

Issue 13 lets the project keep its own sampler only with a statistical test of its
distribution: a chi-square goodness-of-fit test on 200,000 draws per ε against
P(Z = k) = (1 − q)/(1 + q) · q^|k|, q = e^−ε, and its mean, variance and symmetry. The test
has power: a sampler off by 5 % in ε, or one that forgets the sign, fails it."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from scipy import stats

from compute.algorithms.dp import discrete_laplace

DRAWS = 200_000


def _pmf(k: int, epsilon: float) -> float:
    q = math.exp(-epsilon)
    return (1 - q) / (1 + q) * q ** abs(k)


def _p_value(samples: list[int], epsilon: float) -> float:
    """Chi-square over the values with ≥ 20 expected draws, the two tails pooled into one cell each."""
    counts = Counter(samples)
    n = len(samples)
    k_max = 0
    while n * _pmf(k_max + 1, epsilon) >= 20:
        k_max += 1
    cells = list(range(-k_max, k_max + 1))
    observed = [counts[k] for k in cells]
    expected = [n * _pmf(k, epsilon) for k in cells]
    tail = sum(c for k, c in counts.items() if abs(k) > k_max)
    observed.append(tail)
    expected.append(n - sum(expected))
    return float(stats.chisquare(observed, expected).pvalue)


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.0, 2.0])
def test_the_sampler_has_the_discrete_laplace_distribution(epsilon: float) -> None:
    rng = random.Random(20261202)
    samples = [discrete_laplace(epsilon, rng) for _ in range(DRAWS)]
    assert _p_value(samples, epsilon) > 1e-4
    q = math.exp(-epsilon)
    variance = 2 * q / (1 - q) ** 2
    mean = sum(samples) / DRAWS
    assert abs(mean) < 5 * math.sqrt(variance / DRAWS)  # symmetric about 0
    observed = sum(s * s for s in samples) / DRAWS - mean * mean
    assert abs(observed - variance) / variance < 0.03


def test_the_test_rejects_a_wrong_sampler() -> None:
    rng = random.Random(7)
    off = [discrete_laplace(0.5 * 1.05, rng) for _ in range(DRAWS)]  # ε off by 5 %
    assert _p_value(off, 0.5) < 1e-6
    one_sided = [abs(discrete_laplace(0.5, rng)) for _ in range(DRAWS)]
    assert _p_value(one_sided, 0.5) < 1e-6


def test_system_randomness_is_what_production_uses() -> None:
    from compute.algorithms import get_algorithm

    assert isinstance(get_algorithm("psi").rng, random.SystemRandom)
    assert isinstance(get_algorithm("stats").rng, random.SystemRandom)
