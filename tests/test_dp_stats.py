"""Differentially private stats: clipping, encrypted noise added by the hub, the privacy
budget reserved per right, charged on release (dp_charge on the ledger), refunded on failure."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from compute import services
from compute.algorithms import get_algorithm
from compute.algorithms.base import JobView, ParamError, Party
from compute.models import Job
from ledger.models import LedgerEntry
from marketplace.models import UsageRight
from tests.conftest import api_for, post_job, right_on_new_offer
from tests.test_jobs_protocol import _deliver
from tests.test_stats_algorithm import DS, FakeNode


class Fixed(random.Random):
    """random() always returns the same value, so the noise is known."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_dp_parameters_need_bounds_and_a_sane_epsilon() -> None:
    stats = get_algorithm("stats")
    ok = stats.validate({"column": "x", "dp_epsilon": 1, "bounds": [0, 100]}, DS)
    assert ok["dp_epsilon"] == 1.0 and ok["bounds"] == [0.0, 100.0]
    for params, field in [
        ({"column": "x", "dp_epsilon": 1}, "bounds"),
        ({"column": "x", "dp_epsilon": 0}, "dp_epsilon"),
        ({"column": "x", "dp_epsilon": 1, "bounds": [5, 5]}, "bounds"),
        ({"column": "x", "bounds": [0, 1]}, "bounds"),
    ]:
        with pytest.raises(ParamError) as err:
            stats.validate(params, DS)
        assert field in err.value.errors


def test_the_hub_adds_noise_under_encryption_and_providers_clip(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stats = get_algorithm("stats")
    monkeypatch.setattr(type(stats), "rng", Fixed(0.0))  # u = 0 → both geometrics 0 → zero noise
    rows = [{"x": str(v)} for v in (1, 2, 3, 500)]  # 500 is clipped to 10
    consumer, provider = FakeNode("bank", {}), FakeNode("acme", {"a": rows})
    job = JobView(
        id="j",
        params={"column": "x", "key_bits": 1024, "dp_epsilon": 1.0, "bounds": [0.0, 10.0]},
        parties=[Party("consumer", "bank", "consumer"), Party("provider:1", "acme", "provider", 1, "a")],
    )
    nodes = {"consumer": consumer, "provider:1": provider}
    outbox, outputs, spent = list(stats.start(job).sends), None, 0.0
    while outbox:
        send = outbox.pop(0)
        progress = stats.on_result(
            job, send.step, send.party, stats.node_step(nodes[send.party], send.step, send.body).body
        )
        outbox.extend(progress.sends)
        spent += progress.privacy_spent
        outputs = progress.outputs or outputs
    assert outputs["count"] == 4 and outputs["sum"] == pytest.approx(16.0)  # 1 + 2 + 3 + 10
    assert outputs["dp"]["epsilon"] == 1.0 and spent == 1.0
    assert job.state["partials"] == {}

    monkeypatch.setattr(type(stats), "rng", random.Random(7))
    job2 = JobView(id="j2", params=job.params, parties=job.parties)
    consumer.job = provider.job = "j2"  # the nodes' context is per job
    outbox, noisy = list(stats.start(job2).sends), None
    while outbox:
        send = outbox.pop(0)
        progress = stats.on_result(
            job2, send.step, send.party, stats.node_step(nodes[send.party], send.step, send.body).body
        )
        outbox.extend(progress.sends)
        noisy = progress.outputs or noisy
    # Σx has sensitivity 10 (in units), ε/3 → a noise scale of 30: never exactly zero here.
    assert noisy["sum"] != pytest.approx(16.0, abs=1e-6)


@pytest.mark.django_db
def test_privacy_budget_is_reserved_charged_on_the_ledger_and_refunded_on_failure(demo) -> None:  # type: ignore[no-untyped-def]
    right_id = right_on_new_offer(title="DP", operations=["stats"], epsilon="2.000", key="dp")
    bank = api_for("bank")
    params = {"column": "tenure_months", "key_bits": 1024, "dp_epsilon": 1.5, "bounds": [0, 240]}
    r = post_job(bank, "stats", params, [right_id], "j1")
    assert r.status_code == 201, r.content
    assert UsageRight.objects.get(id=right_id).epsilon_spent == Decimal("1.5")
    over = post_job(bank, "stats", params, [right_id], "j2")
    assert over.status_code == 409 and "dp_epsilon" in over.json()["error"]["fields"]

    job = Job.objects.get(id=r.json()["id"])
    services.job_start(job_id=str(job.id))
    _deliver(job, "keygen")
    _deliver(job, "partial")
    charge = LedgerEntry.objects.get(kind="dp_charge", right_id=right_id)
    assert charge.payload["epsilon"] == "1.5" and charge.payload["job"] == str(job.id)
    _deliver(job, "decrypt")
    job.refresh_from_db()
    assert job.status == "succeeded" and job.outputs["dp"]["epsilon"] == 1.5
    assert abs(job.outputs["count"] - 2000) < 200

    small = {**params, "dp_epsilon": 0.5}
    failing = post_job(bank, "stats", small, [right_id], "j3").json()
    assert UsageRight.objects.get(id=right_id).epsilon_spent == Decimal("2.0")
    services._fail(Job.objects.get(id=failing["id"]), "node down")
    assert UsageRight.objects.get(id=right_id).epsilon_spent == Decimal("1.5")


@pytest.mark.parametrize("field", ["count", "sum"])
def test_the_noise_stats_adds_has_the_discrete_laplace_distribution(field) -> None:  # type: ignore[no-untyped-def]
    """The sampler at the scale ``stats`` uses it (ε/3 per total over its sensitivity in fixed
    point), checked against the exact law P(k) = (1 - q)/(1 + q) · q^|k|, q = e^-ε'."""
    import math
    import random
    import statistics

    from scipy.stats import chisquare

    from compute.algorithms.dp import discrete_laplace
    from compute.algorithms.stats import SCALE

    epsilon, reach = 1.0, 240.0
    sensitivity = {"count": 1, "sum": round(reach * SCALE)}[field]
    eps = (epsilon / 3) / sensitivity
    q = math.exp(-eps)
    rng = random.Random(20261201)
    n = 40_000
    draws = [discrete_laplace(eps, rng) for _ in range(n)]
    variance = 2 * q / (1 - q) ** 2
    assert abs(statistics.fmean(draws)) < 5 * math.sqrt(variance / n)
    assert statistics.pvariance(draws) == pytest.approx(variance, rel=0.05)
    # Goodness of fit over bins of equal width in units of the scale.
    width = max(1, round(1 / eps / 2))
    edges = [k * width for k in range(-6, 7)]

    def mass(lo: int, hi: int) -> float:  # P(lo <= Z < hi)
        def cdf(k: int) -> float:  # P(Z <= k)
            return 1 - q ** (k + 1) / (1 + q) if k >= 0 else q ** (-k) / (1 + q)

        return cdf(hi - 1) - cdf(lo - 1)

    bins = list(zip(edges, edges[1:], strict=False))
    expected = [n * mass(lo, hi) for lo, hi in bins]
    observed = [sum(1 for d in draws if lo <= d < hi) for lo, hi in bins]
    tails = n - sum(observed)
    _, p = chisquare([*observed, tails], [*expected, n - sum(expected)])
    assert p > 1e-4, (observed, expected)
