"""``stats`` histograms: counts per bin summed under Paillier, and the differencing rule.

Every provider's node remembers the bin edges it has released on a column (to anyone), and
answers a new histogram only if no range between the edges of all releases together holds a
small group: the obvious attack — two histograms whose edges differ by one small range, then
subtract — is refused before anything is released.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from compute.algorithms.base import Column, DatasetInfo, JobView, ParamError, Party, StepRefused, get_algorithm
from tests.algorithm_driver import FakeNode, drive

STATS = get_algorithm("stats")
MIN_GROUP = 5


def _nodes(values: dict[str, list[float]]) -> dict[str, FakeNode]:
    consumer = FakeNode("bank", {})
    nodes = {"consumer": consumer}
    for key, vs in values.items():
        node = FakeNode(key.split(":")[1], {"d": [{"x": str(v)} for v in vs]}, min_group=MIN_GROUP)
        node.consumer = consumer
        nodes[key] = node
    return nodes


def _job(nodes: dict[str, FakeNode], job_id: str, **params: Any) -> JobView:
    infos = [DatasetInfo(i, f"d{i}", (Column("x", "number", "feature"),)) for i in range(len(nodes) - 1)]
    clean = STATS.validate({"column": "x", "key_bits": 1024, **params}, infos)
    for node in nodes.values():
        node.job = job_id
    parties = [Party("consumer", "bank", "consumer")] + [
        Party(k, nodes[k].slug, "provider", dataset_id=i, dataset_local="d")
        for i, k in enumerate(nodes)
        if k != "consumer"
    ]
    return JobView(id=job_id, params=clean, parties=parties)


def _truth(values: list[float], edges: list[float]) -> list[int]:
    v = np.asarray(values)
    return [int(((v >= a) & (v < b)).sum()) for a, b in zip(edges, edges[1:], strict=False)]


def test_a_histogram_over_two_providers_is_the_sum_of_their_counts() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 100, 300).tolist(), rng.integers(20, 120, 200).tolist()
    nodes = _nodes({"provider:a": a, "provider:b": b})
    edges = [0, 25, 50, 75, 100, 125]
    out = drive(STATS, _job(nodes, "h1", histogram={"edges": edges}), nodes)
    assert out["counts"] == _truth(a + b, edges)
    assert out["edges"] == [float(e) for e in edges]
    assert out["by_party"] == {"provider:a": {"counts": _truth(a, edges)}, "provider:b": {"counts": _truth(b, edges)}}


def test_the_obvious_differencing_attack_is_refused_before_anything_is_released() -> None:
    # 40 rows in [0, 20), 3 rows in [20, 21), 40 rows in [21, 30).
    values = [float(v % 20) for v in range(40)] + [20.2, 20.5, 20.8] + [21 + v % 9 for v in range(40)]
    nodes = _nodes({"provider:a": values})
    first = drive(STATS, _job(nodes, "q1", histogram={"edges": [0, 10, 20, 30]}), nodes)
    assert first["counts"] == [20, 20, 43]
    # The attacker's second query moves one edge by one unit: subtracting the two answers would
    # give the 3 rows in [20, 21) — a group below the minimum of 5.
    shifted = [0, 10, 21, 30]
    assert _truth(values, [0, 10, 20, 30])[2] - _truth(values, shifted)[2] == 3  # what the attack targets
    with pytest.raises(StepRefused, match="isolate 1 range"):
        drive(STATS, _job(nodes, "q2", histogram={"edges": shifted}), nodes)
    # A colluding consumer fares no better: the node remembers the edges, not who asked.
    nodes["consumer"] = FakeNode("other-bank", {})
    nodes["provider:a"].consumer = nodes["consumer"]
    with pytest.raises(StepRefused, match="isolate 1 range"):
        drive(STATS, _job(nodes, "q3", histogram={"edges": shifted}), nodes)
    # "Everything" minus "everything but the top value" (the 4 rows at 29) is the same attack.
    with pytest.raises(StepRefused, match="isolate 1 range"):
        drive(STATS, _job(nodes, "q4", histogram={"edges": [0, 28.5]}), nodes)
    # Edges chosen from those released (a coarser histogram) are answered.
    coarse = drive(STATS, _job(nodes, "q5", histogram={"edges": [0, 20, 30]}), nodes)
    assert coarse["counts"] == [40, 43]


def test_a_refused_histogram_teaches_the_node_nothing_new() -> None:
    values = [float(v) for v in range(40)] + [40.5]
    nodes = _nodes({"provider:a": values})
    with pytest.raises(StepRefused, match="isolate"):
        drive(STATS, _job(nodes, "r1", histogram={"edges": [0, 40, 40.4]}), nodes)
    assert nodes["provider:a"].memory == {}  # nothing released, nothing remembered
    drive(STATS, _job(nodes, "r2", histogram={"edges": [0, 20, 41]}), nodes)
    (remembered,) = nodes["provider:a"].memory.values()
    assert remembered == {"edges": [0.0, 20.0, 41.0]}


def test_a_dp_histogram_adds_noise_per_bin_and_spends_its_epsilon() -> None:
    values = [float(v % 50) for v in range(500)]
    edges = [0, 10, 20, 30, 40, 50]
    noisy = []
    for i in range(4):
        nodes = _nodes({"provider:a": values})
        job = _job(nodes, f"dp{i}", histogram={"edges": edges}, dp_epsilon=0.5)
        noisy.append(drive(STATS, job, nodes)["counts"])
        assert job.state["dp_released"] is True
    truth = _truth(values, edges)
    assert any(c != truth for c in noisy)  # P(all 20 draws are 0) = (tanh(0.25))^20 ≈ 1e-12
    assert all(abs(n - t) < 60 for c in noisy for n, t in zip(c, truth, strict=True))


def test_a_provider_below_its_minimum_group_is_suppressed_in_a_histogram() -> None:
    nodes = _nodes({"provider:a": [float(v) for v in range(50)], "provider:b": [1.0, 2.0]})
    out = drive(STATS, _job(nodes, "s1", histogram={"edges": [0, 25, 50]}), nodes)
    assert out["counts"] == [25, 25] and out["by_party"]["provider:b"] == {"suppressed": True}


@pytest.mark.parametrize(
    ("histogram", "extra", "field"),
    [
        ({"edges": [0, 0, 1]}, {}, "histogram"),
        ({"edges": [1]}, {}, "histogram"),
        ({"edges": list(range(103))}, {}, "histogram"),
        ({"edges": [0, 1], "bins": 3}, {}, "histogram"),
        ({"edges": [0, 1]}, {"dp_epsilon": 1, "bounds": [0, 1]}, "bounds"),
    ],
)
def test_bad_histograms_are_refused_by_field(histogram: dict[str, Any], extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ParamError) as e:
        STATS.validate(
            {"column": "x", "histogram": histogram, **extra}, [DatasetInfo(0, "d", (Column("x", "number", "feature"),))]
        )
    assert field in e.value.errors


def test_dp_quantiles_are_read_from_a_noised_grid_which_needs_no_differencing_rule() -> None:
    values = [float(v % 1000) for v in range(5000)]  # uniform on [0, 1000)
    nodes = _nodes({"provider:a": values})
    grid = [float(e) for e in range(0, 1001, 5)]  # 200 cells of 25 rows: an exact release would be refused
    job = _job(nodes, "dpq", quantiles={"probabilities": [0.1, 0.5, 0.9], "edges": grid}, dp_epsilon=1.0)
    out = drive(STATS, job, nodes)
    assert [q["p"] for q in out["quantiles"]] == [0.1, 0.5, 0.9]
    for q, want in zip(out["quantiles"], (100, 500, 900), strict=True):
        assert abs(q["value"] - want) < 15, out["quantiles"]
    assert "counts" not in out and out["dp"]["epsilon"] == 1.0
    assert nodes["provider:a"].memory == {}  # a DP release is not held to (nor recorded for) the rule


def test_quantiles_need_dp_and_exclude_a_histogram() -> None:
    info = [DatasetInfo(0, "d", (Column("x", "number", "feature"),))]
    q = {"probabilities": [0.5], "edges": [0, 1, 2]}
    with pytest.raises(ParamError) as e:
        STATS.validate({"column": "x", "quantiles": q}, info)
    assert "dp_epsilon" in e.value.errors
    with pytest.raises(ParamError) as e:
        STATS.validate({"column": "x", "quantiles": q, "histogram": {"edges": [0, 1]}, "dp_epsilon": 1}, info)
    assert "quantiles" in e.value.errors
    with pytest.raises(ParamError) as e:
        STATS.validate({"column": "x", "quantiles": {**q, "probabilities": [0.5, 0.2]}, "dp_epsilon": 1}, info)
    assert "quantiles" in e.value.errors


def test_quantile_of_a_histogram_interpolates_within_a_bin() -> None:
    from compute.algorithms.stats import quantile

    assert quantile([10, 10], [0.0, 1.0, 2.0], 0.5) == 1.0
    # A negative noised count is summed as it is; the running total 10, 7, 17 is read as 10, 10, 17.
    assert quantile([10, -3, 10], [0.0, 1.0, 2.0, 3.0], 0.75) == pytest.approx(2 + (12.75 - 10) / 7)
    assert quantile([0, 0], [0.0, 1.0, 2.0], 0.5) is None


def test_a_correlation_matrix_over_one_provider_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(50, 10, 400)
    b = 0.6 * a + rng.normal(0, 5, 400)
    c = rng.normal(0, 1, 400)
    consumer = FakeNode("bank", {})
    rows = [{"a": f"{x:.6f}", "b": f"{y:.6f}", "c": f"{z:.6f}"} for x, y, z in zip(a, b, c, strict=True)]
    rows[0]["c"] = ""  # an incomplete row is left out
    node = FakeNode("acme", {"d": rows}, min_group=MIN_GROUP)
    node.consumer = consumer
    nodes = {"consumer": consumer, "provider:a": node}
    info = [DatasetInfo(0, "d", tuple(Column(n, "number", "feature") for n in "abc"))]
    clean = STATS.validate({"column": "a", "key_bits": 1024, "correlation": {"columns": ["a", "b", "c"]}}, info)
    for n in nodes.values():
        n.job = "corr"
    parties = [Party("consumer", "bank", "consumer"), Party("provider:a", "acme", "provider", 0, "d")]
    out = drive(STATS, JobView(id="corr", params=clean, parties=parties), nodes)
    x = np.array([[float(r[k]) for k in "abc"] for r in rows[1:]])
    want = np.corrcoef(x.T)
    assert out["count"] == 399 and out["columns"] == ["a", "b", "c"]
    assert np.allclose(np.array(out["matrix"]), want, atol=1e-5)
    assert out["mean"] == pytest.approx(x.mean(axis=0).round(6).tolist(), abs=1e-5)


def test_a_correlation_is_over_one_dataset_and_numeric_features_only() -> None:
    cols = (Column("a", "number", "feature"), Column("s", "string", "feature"), Column("id", "string", "id"))
    one = [DatasetInfo(0, "d", cols)]
    for corr, datasets in (
        ({"columns": ["a", "s"]}, one),
        ({"columns": ["a", "id"]}, one),
        ({"columns": ["a"]}, one),
        ({"columns": ["a", "a"]}, one),
        ({"columns": ["a", "a2"], "x": 1}, one),
        ({"columns": ["a", "b"]}, [DatasetInfo(0, "d", cols), DatasetInfo(1, "e", cols)]),
    ):
        with pytest.raises(ParamError) as e:
            STATS.validate({"column": "a", "correlation": corr}, datasets)
        assert "correlation" in e.value.errors, corr
    with pytest.raises(ParamError) as e:
        STATS.validate({"column": "a", "correlation": {"columns": ["a", "s"]}, "dp_epsilon": 1}, one)
    assert "exact" in e.value.errors["correlation"][0]


def _grouped(rows: dict[str, list[tuple[str, float]]]) -> dict[str, FakeNode]:
    consumer = FakeNode("bank", {})
    nodes = {"consumer": consumer}
    for key, pairs in rows.items():
        node = FakeNode(key.split(":")[1], {"d": [{"x": str(v), "g": g} for g, v in pairs]}, min_group=MIN_GROUP)
        node.consumer = consumer
        nodes[key] = node
    return nodes


def _group_job(nodes: dict[str, FakeNode], job_id: str, groups: list[str]) -> JobView:
    infos = [
        DatasetInfo(i, f"d{i}", (Column("x", "number", "feature"), Column("g", "string", "feature")))
        for i in range(len(nodes) - 1)
    ]
    clean = STATS.validate({"column": "x", "key_bits": 1024, "group_by": {"column": "g", "groups": groups}}, infos)
    for node in nodes.values():
        node.job = job_id
    parties = [Party("consumer", "bank", "consumer")] + [
        Party(k, nodes[k].slug, "provider", dataset_id=i, dataset_local="d")
        for i, k in enumerate(k for k in nodes if k != "consumer")
    ]
    return JobView(id=job_id, params=clean, parties=parties)


def test_a_group_by_over_two_providers_sums_count_sum_and_mean_per_group() -> None:
    a = [("north", 1.0)] * 10 + [("south", 3.0)] * 20
    b = [("north", 2.0)] * 10 + [("south", 5.0)] * 10 + [("east", 7.0)] * 8
    nodes = _grouped({"provider:a": a, "provider:b": b})
    out = drive(STATS, _group_job(nodes, "g1", ["north", "south"]), nodes)
    by = {g["group"]: g for g in out["groups"]}
    assert by["north"] == {"group": "north", "count": 20, "sum": 30.0, "mean": 1.5, "merged_at": []}
    assert by["south"]["count"] == 30 and by["south"]["mean"] == pytest.approx(110 / 30, abs=1e-6)
    assert by["(other)"]["count"] == 8 and by["(other)"]["sum"] == 56.0


def test_the_differencing_attack_on_a_small_group_fails_by_complementary_suppression() -> None:
    # 3 rows in "islands" (below the minimum of 5); the attacker knows the column's total (stats)
    # and asks for every other group, hoping total − Σ groups = islands.
    rows = [("north", 1.0)] * 30 + [("south", 1.0)] * 20 + [("east", 1.0)] * 12 + [("islands", 100.0)] * 3
    nodes = _grouped({"provider:a": rows})
    total = drive(STATS, _job_for_total(nodes), nodes)
    assert total["count"] == 65
    everything = drive(STATS, _group_job(nodes, "g2", ["north", "south", "east", "islands"]), nodes)
    by = {g["group"]: g for g in everything["groups"]}
    # islands and the smallest other category (east) are never reported: both are in (other).
    assert by["islands"]["count"] == 0 and by["islands"]["merged_at"] == ["provider:a"]
    assert by["east"]["count"] == 0 and by["east"]["merged_at"] == ["provider:a"]
    assert by["(other)"]["count"] == 15  # east + islands: at least the minimum group
    # However the attacker combines answers, the 3 rows stay inside a group of 15.
    reported = {name: g["count"] for name, g in by.items() if name != "(other)"}
    assert total["count"] - sum(reported.values()) == 15
    for groups in (["north"], ["north", "south"], ["east"], ["islands"]):
        answer = drive(STATS, _group_job(nodes, f"g-{'-'.join(groups)}", groups), nodes)
        counts = [g["count"] for g in answer["groups"]]
        assert all(c == 0 or c >= MIN_GROUP for c in counts), (groups, counts)
        assert 3 not in counts and 100.0 not in [g["mean"] for g in answer["groups"]]


def _job_for_total(nodes: dict[str, FakeNode]) -> JobView:
    infos = [DatasetInfo(0, "d0", (Column("x", "number", "feature"), Column("g", "string", "feature")))]
    for node in nodes.values():
        node.job = "total"
    parties = [
        Party("consumer", "bank", "consumer"),
        Party("provider:a", "a", "provider", dataset_id=0, dataset_local="d"),
    ]
    return JobView(id="total", params=STATS.validate({"column": "x", "key_bits": 1024}, infos), parties=parties)


def test_a_group_by_is_refused_by_field() -> None:
    cols = (Column("x", "number", "feature"), Column("g", "string", "feature"))
    info = [DatasetInfo(0, "d", cols)]
    for g, extra in (
        ({"column": "x", "groups": ["a"]}, {}),  # numeric: not categorical
        ({"column": "g", "groups": []}, {}),
        ({"column": "g", "groups": ["a", "a"]}, {}),
        ({"column": "g", "groups": ["(other)"]}, {}),
        ({"column": "g"}, {}),
        ({"column": "g", "groups": ["a"]}, {"histogram": {"edges": [0, 1]}}),
    ):
        with pytest.raises(ParamError) as e:
            STATS.validate({"column": "x", "group_by": g, **extra}, info)
        assert "group_by" in e.value.errors, g


def test_provider_declared_bins_are_the_providers_own_and_must_agree() -> None:
    declared = (0.0, 12.0, 24.0, 600.0)

    def info(i: int, bins: tuple[float, ...] | None) -> DatasetInfo:
        return DatasetInfo(i, f"d{i}", (Column("x", "number", "feature", bins),))

    clean = STATS.validate(
        {"column": "x", "histogram": {"provider_bins": True}}, [info(0, declared), info(1, declared)]
    )
    assert clean["histogram"] == {"edges": list(declared), "provider_bins": True}
    for datasets, message in (
        ([info(0, declared), info(1, (0.0, 10.0, 600.0))], "different bins"),
        ([info(0, declared), info(1, None)], "declares no bins"),
    ):
        with pytest.raises(ParamError) as e:
            STATS.validate({"column": "x", "histogram": {"provider_bins": True}}, datasets)
        assert message in e.value.errors["histogram"][0]
    with pytest.raises(ParamError) as e:
        STATS.validate({"column": "x", "histogram": {"provider_bins": True, "edges": [0, 1]}}, [info(0, declared)])
    assert "edges, or provider_bins" in e.value.errors["histogram"][0]
