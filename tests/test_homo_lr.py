"""``homo_lr`` (FedAvg under packed Paillier), hub and node sides driven in one process.

Accuracy against centralised scikit-learn on the breast-cancer rows split across three
providers, IID and skewed; dropout; and the consumer's node refusing anything but a sum of
enough signed contributions (no single provider's update decrypted).
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from compute.algorithms import homo_lr
from compute.algorithms.base import Column, DatasetInfo, JobView, ParamError, Party, StepRefused, get_algorithm
from protocol import keys
from tests.algorithm_driver import FakeNode, drive

DATA = Path(__file__).resolve().parents[1] / "compute" / "demo_datasets" / "breast_cancer.csv"
FEATURES = [f"x{j}" for j in range(30)]
ALGO = get_algorithm("homo_lr")


def _rows() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rows = list(csv.DictReader(DATA.open()))
    return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "test"]


def _xy(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([[float(r[f]) for f in FEATURES] for r in rows]), np.array([int(r["y"]) for r in rows])


def _split(train: list[dict[str, str]], kind: str) -> list[list[dict[str, str]]]:
    y = np.array([int(r["y"]) for r in train])
    rng = np.random.default_rng(0)
    if kind == "iid":
        order = rng.permutation(len(train))
        return [[train[i] for i in order[k::3]] for k in range(3)]
    # Skewed: 60 / 30 / 10 % of the positives and 10 / 30 / 60 % of the negatives.
    parts: list[list[dict[str, str]]] = [[], [], []]
    for label, shares in ((1, (0.6, 0.3, 0.1)), (0, (0.1, 0.3, 0.6))):
        idx = rng.permutation(np.where(y == label)[0])
        cuts = np.cumsum([0, *(round(s * len(idx)) for s in shares)])
        cuts[-1] = len(idx)
        for k in range(3):
            parts[k].extend(train[i] for i in idx[cuts[k] : cuts[k + 1]])
    return parts


def _federation(parts: list[list[dict[str, str]]], **params: Any) -> tuple[JobView, dict[str, FakeNode]]:
    consumer = FakeNode("lab", {})
    nodes: dict[str, FakeNode] = {"consumer": consumer}
    parties = [Party(key="consumer", node="lab", role="consumer")]
    for k, rows in enumerate(parts):
        key = f"provider:{k}"
        nodes[key] = FakeNode(f"hospital{k}", {"records": [{**{f: r[f] for f in FEATURES}, "y": r["y"]} for r in rows]})
        nodes[key].consumer = consumer
        parties.append(
            Party(
                key=key,
                node=f"hospital{k}",
                role="provider",
                dataset_id=k,
                dataset_local="records",
                node_key=keys.public_b64(nodes[key].key),  # as the hub names it from the enrolment
            )
        )
    clean = ALGO.validate(
        {"features": FEATURES, "label": "y", "key_bits": 1024, "l2": round(1 / 426, 6), **params},
        [_info(k) for k in range(len(parts))],
    )
    return JobView(id="job-1", params=clean, parties=parties), nodes


def _info(k: int) -> DatasetInfo:
    cols = (
        Column("id", "string", "id"),
        *(Column(f, "number", "feature") for f in FEATURES),
        Column("y", "integer", "label"),
    )  # noqa: E501
    return DatasetInfo(id=k, name=f"records-{k}", columns=cols)


@pytest.mark.parametrize("kind", ["iid", "skewed"])
def test_fedavg_over_three_providers_is_within_0_005_auc_of_centralised_sklearn(kind: str) -> None:
    train, test = _rows()
    x_train, y_train = _xy(train)
    x_test, y_test = _xy(test)
    central = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    reference = roc_auc_score(y_test, central.decision_function(x_test))
    job, nodes = _federation(_split(train, kind), rounds=20, local_epochs=2, learning_rate=0.1, batch_size=32)
    trace: list[Any] = []
    outputs = drive(ALGO, job, nodes, trace=trace)
    model = outputs["model"]
    auc = roc_auc_score(y_test, x_test @ np.array(model["weights"]) + model["bias"])
    assert abs(auc - reference) <= 0.005, (kind, auc, reference)
    # 21 evaluated models (the initial one and one per round), each on all 426 rows, loss falling.
    history = outputs["history"]
    assert [h["round"] for h in history] == list(range(22))
    assert all(h["rows"] == 426 for h in history)
    assert history[-1]["loss"] < history[1]["loss"] and history[-1]["auc"] > 0.98
    # The consumer's node only ever decrypted sums of all three signed contributions.
    aggregates = [sent for step, _, sent, *_ in trace if step == "fl_aggregate"]
    assert len(aggregates) == 22 and all(len(a["contributions"]) == 3 for a in aggregates)
    # Metering: each training step reads every row once to evaluate and once per local epoch.
    train_steps = [t for t in trace if t[0] == "fl_train"]
    assert {t[4] for t in train_steps} == {len(r) for r in _split(train, kind)}
    assert ALGO.passes(job.params, "fl_train") == 3 and ALGO.passes(job.params, "fl_moments") == 1


class _Leaving(FakeNode):
    """A provider whose data goes away after ``rounds`` training rounds (its node refuses)."""

    def __init__(self, node: FakeNode, rounds: int) -> None:
        self.__dict__.update(node.__dict__)
        self.left = rounds

    def load_columns(self, local_name: str, columns: list[str]) -> dict[str, Any]:
        self.left -= 1
        if self.left < 0:
            raise StepRefused("no_dataset", "the dataset was withdrawn")
        return super().load_columns(local_name, columns)


def test_a_provider_that_drops_out_mid_training_leaves_the_round_to_the_others() -> None:
    train, test = _rows()
    job, nodes = _federation(_split(train, "iid"), rounds=6, local_epochs=1, min_providers=2)
    nodes["provider:2"] = _Leaving(nodes["provider:2"], rounds=3)  # moments + 2 rounds, then gone
    outputs = drive(ALGO, job, nodes)
    assert outputs["dropped"] == {"provider:2": "round 3: the dataset was withdrawn (no_dataset)"}
    providers = [h["providers"] for h in outputs["history"]]
    assert providers[:3] == [["provider:0", "provider:1", "provider:2"]] * 3
    assert providers[3:] == [["provider:0", "provider:1"]] * 5  # rounds 3–6 and the final evaluation
    assert outputs["history"][-1]["rows"] == 284  # two thirds of the 426 rows
    x_test, y_test = _xy(test)
    assert roc_auc_score(y_test, x_test @ np.array(outputs["model"]["weights"]) + outputs["model"]["bias"]) > 0.99


def test_with_fewer_providers_left_than_min_providers_the_job_fails() -> None:
    train, _ = _rows()
    job, nodes = _federation(_split(train, "iid"), rounds=4, local_epochs=1, min_providers=3)
    nodes["provider:1"] = _Leaving(nodes["provider:1"], rounds=2)
    with pytest.raises(ValueError, match="round 2: 2 provider\\(s\\) answered, fewer than min_providers 3"):
        drive(ALGO, job, nodes)


def test_a_silent_provider_is_dropped_when_the_round_stalls() -> None:
    train, _ = _rows()
    job, nodes = _federation(_split(train, "iid"), rounds=2, local_epochs=1)
    asks = _asks(job, nodes)
    for ask in asks[:2]:  # provider:2 never answers
        ALGO.on_result(job, ask.step, ask.party, ALGO.node_step(nodes[ask.party], ask.step, ask.body).body)
    progress = ALGO.on_stalled(job)
    assert progress is not None and [s.step for s in progress.sends] == ["fl_aggregate"]
    assert job.state["dropped"] == {"provider:2": "round 0: no answer"}
    assert sorted(progress.sends[0].body["contributions"]) == ["provider:0", "provider:1"]
    # Its late answer is not used.
    late = ALGO.node_step(nodes["provider:2"], asks[2].step, asks[2].body).body
    assert ALGO.on_result(job, asks[2].step, "provider:2", late).sends == []


def _asks(job: JobView, nodes: dict[str, FakeNode]) -> list[Any]:
    """Start the job and take the consumer's key: the hub's ``fl_moments`` steps to the providers."""
    (keygen,) = ALGO.start(job).sends
    body = ALGO.node_step(nodes["consumer"], "fl_keygen", keygen.body).body
    return list(ALGO.on_result(job, "fl_keygen", "consumer", body).sends)


def _round_zero(job: JobView, nodes: dict[str, FakeNode]) -> dict[str, Any]:
    """The consumer's ``fl_aggregate`` body for round 0, as an honest hub sends it."""
    for ask in _asks(job, nodes):
        progress = ALGO.on_result(job, ask.step, ask.party, ALGO.node_step(nodes[ask.party], ask.step, ask.body).body)
    (aggregate,) = progress.sends
    return copy.deepcopy(aggregate.body)


def test_the_consumer_node_never_decrypts_one_provider_alone() -> None:
    train, _ = _rows()
    job, nodes = _federation(_split(train, "iid"), rounds=2, local_epochs=1, min_providers=2)
    honest = _round_zero(job, nodes)
    consumer = nodes["consumer"]

    def refused(body: dict[str, Any]) -> str:
        with pytest.raises(StepRefused) as e:
            ALGO.node_step(consumer, "fl_aggregate", body)
        return e.value.code

    one = {**honest, "contributions": {"provider:0": honest["contributions"]["provider:0"]}}
    assert refused({**one, "min_providers": 1}) == "too_few"  # a hub that lowers the bar: still two
    twice = {  # one provider's contribution presented as two parties'
        **honest,
        "contributions": {
            "provider:0": honest["contributions"]["provider:0"],
            "provider:1": honest["contributions"]["provider:0"],
        },  # noqa: E501
        "node_keys": {"provider:0": honest["node_keys"]["provider:0"], "provider:1": honest["node_keys"]["provider:0"]},
    }
    assert refused(twice) == "unsigned_contribution"  # signed for provider:0, not provider:1
    forged_key = {**honest, "node_keys": {**honest["node_keys"], "provider:1": honest["node_keys"]["provider:2"]}}
    assert refused(forged_key) == "unsigned_contribution"
    other_round = {**honest, "round": 1}
    assert refused(other_round) == "answered"  # out of order: round 1 before round 0
    out = ALGO.node_step(consumer, "fl_aggregate", honest).body
    assert out["metrics"] == {"rows": 426, "positives": int(sum(int(r["y"]) for r in train))}
    assert refused(honest) == "answered"  # the same round again (e.g. with a subset): refused


def test_the_hub_holds_each_contribution_to_its_signer_round_and_party() -> None:
    train, _ = _rows()
    job, nodes = _federation(_split(train, "iid"), rounds=2, local_epochs=1)
    asks = _asks(job, nodes)
    reply = ALGO.node_step(nodes["provider:0"], asks[0].step, asks[0].body).body
    with pytest.raises(ValueError, match="not signed by its node"):
        ALGO.on_result(job, "fl_moments", "provider:1", reply)  # provider:0's statement from provider:1
    stale = ALGO.node_step(nodes["provider:1"], asks[1].step, {**asks[1].body, "round": 5}).body
    with pytest.raises(ValueError, match="another job, round or party"):
        ALGO.on_result(job, "fl_moments", "provider:1", stale)
    ALGO.on_result(job, "fl_moments", "provider:0", reply)
    with pytest.raises(ValueError, match="already answered"):
        ALGO.on_result(job, "fl_moments", "provider:0", reply)


def test_a_provider_encrypts_only_under_the_key_the_consumer_signed() -> None:
    train, _ = _rows()
    job, nodes = _federation(_split(train, "iid"), rounds=1, local_epochs=1)
    ask = _asks(job, nodes)[0]
    other = ALGO.node_step(FakeNode("x", {}), "fl_keygen", {"key_bits": 1024}).body["public_key"]
    with pytest.raises(StepRefused) as e:
        ALGO.node_step(nodes[ask.party], ask.step, {**ask.body, "public_key": other})
    assert e.value.code == "unsigned_key"


def test_a_provider_below_its_minimum_group_or_with_a_non_binary_label_refuses() -> None:
    train, _ = _rows()
    job, nodes = _federation(_split(train, "iid"), rounds=1, local_epochs=1)
    ask = _asks(job, nodes)[0]
    node = nodes[ask.party]
    node.min_group_size = 1000
    with pytest.raises(StepRefused) as e:
        ALGO.node_step(node, ask.step, ask.body)
    assert e.value.code == "group_too_small"
    node.min_group_size = 2
    node.rows["records"][0]["y"] = "2"
    with pytest.raises(StepRefused) as e:
        ALGO.node_step(node, ask.step, ask.body)
    assert e.value.code == "label_not_binary"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"label": "y"}, "features"),
        ({"features": ["x0", "x0"], "label": "y"}, "features"),
        ({"features": ["x0"], "label": "x0"}, "label"),
        ({"features": ["x0", "nope"], "label": "y"}, "features"),
        ({"features": ["x0"], "label": "y", "rounds": 0}, "rounds"),
        ({"features": ["x0"], "label": "y", "learning_rate": 0}, "learning_rate"),
        ({"features": ["x0"], "label": "y", "min_providers": 3}, "min_providers"),
        ({"features": ["x0"], "label": "y", "min_providers": 1}, "min_providers"),
        ({"features": ["x0"], "label": "y", "dp_epsilon": 1}, "params"),
    ],
)
def test_parameters_are_refused_by_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ParamError) as e:
        ALGO.validate(params, [_info(0), _info(1)])
    assert field in e.value.errors


def test_one_dataset_is_not_a_federation() -> None:
    with pytest.raises(ParamError) as e:
        ALGO.validate({"features": ["x0"], "label": "y"}, [_info(0)])
    assert "rights" in e.value.errors


def test_binned_auc_matches_the_exact_auc_when_scores_fall_in_distinct_bins() -> None:
    pos, neg = [0, 0, 1, 2, 0], [1, 1, 0, 1, 0]  # scores by bin: neg 0,1,3; pos 2,3,3
    # pairs: pos@2 beats neg@0,1 (2); pos@3 ×2 beat neg@0,1 (4) and tie neg@3 (2 × ½)
    assert homo_lr.binned_auc(pos, neg) == pytest.approx((2 + 4 + 1) / 9)
    assert homo_lr.binned_auc([0, 1], [0, 0]) is None
