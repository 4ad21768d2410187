"""PSI alignment and vertical logistic regression, driven in process through the real hub and node code.

The accuracy reference is scikit-learn on the same joined rows; the privacy checks read the
trace of every message the hub relayed.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from compute.algorithms import get_algorithm, hetero_lr, psi_align
from compute.algorithms.base import Column, DatasetInfo, JobView, ParamError, Party, StepRefused
from protocol import he, keys, sealed
from tests.algorithm_driver import FakeNode, drive

DATA = Path(__file__).parent / "data" / "breast_cancer"


def _csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open() as fh:
        return list(csv.DictReader(fh))


def _info(ident: int, name: str, columns: list[str]) -> DatasetInfo:
    cols = [Column("id", "string", "id")] + [Column(c, "number", "feature") for c in columns]
    return DatasetInfo(ident, name, tuple(cols))


def _job(algo: Any, params: dict[str, Any], datasets: list[DatasetInfo], grants: int = 2) -> JobView:
    clean = algo.validate(params, datasets)
    parties = [Party("consumer", "bank", "consumer")] + [
        Party(f"provider:{d.id}", f"host{d.id}", "provider", d.id, f"local{d.id}", {"min_group_size": grants})
        for d in datasets
    ]
    return JobView(id="job-1", params=clean, parties=parties)


def _nodes(
    guest_rows: list[dict[str, str]], hosts: dict[int, list[dict[str, str]]], min_group: int = 2
) -> dict[str, FakeNode]:  # noqa: E501
    guest = FakeNode("bank", {"mine": guest_rows}, min_group)
    nodes = {"consumer": guest}
    for ident, rows in hosts.items():
        node = FakeNode(f"host{ident}", {f"local{ident}": rows}, min_group)
        node.consumer = guest
        nodes[f"provider:{ident}"] = node
    return nodes


# --- alignment -------------------------------------------------------------------------


def _ids(prefix: str, values: range) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i:04d}", "v": str(i)} for i in values]


def test_three_parties_align_on_the_joint_intersection_in_one_common_order() -> None:
    algo = get_algorithm("psi_align")
    guest = _ids("c", range(0, 60)) + [{"id": "c0003", "v": "dup"}, {"id": " ", "v": ""}]
    host_a = list(reversed(_ids("c", range(20, 90))))
    host_b = _ids("c", range(10, 50)) + _ids("x", range(0, 30))
    job = _job(
        algo, {"consumer_dataset": "mine", "consumer_id_column": "id"}, [_info(1, "A", ["v"]), _info(2, "B", ["v"])]
    )  # noqa: E501
    nodes = _nodes(guest, {1: host_a, 2: host_b})
    trace: list[Any] = []
    out = drive(algo, job, nodes, trace=trace)
    expected = {f"c{i:04d}" for i in range(20, 50)}
    orders = [n.state[psi_align.ALIGNMENT]["ids"] for n in nodes.values()]
    assert set(orders[0]) == expected and orders[0] == orders[1] == orders[2]
    assert out == {"aligned_records": 30, "providers": 2, "consumer_ids": 60}
    for node in nodes.values():  # the blinding secrets and the unaligned lists are gone
        assert psi_align.SECRET not in node.state
    relayed = repr([(sent, reply) for _, _, sent, reply, _, _ in trace])
    assert "c0021" not in relayed and "x0001" not in relayed  # the hub relays no identifier
    keeps = [t for t in trace if t[0] == "psi_keep"]
    assert [t[5] for t in keeps] == [30, 30]  # the aligned records are what a per-record plan charges
    exchange = [t for t in trace if t[0] == "psi_exchange"]
    assert sorted(t[4] for t in exchange) == [70, 70]  # each provider read its rows once


def test_the_intersection_is_held_to_the_minimum_group_size() -> None:
    algo = get_algorithm("psi_align")
    job = _job(algo, {"consumer_dataset": "mine", "consumer_id_column": "id"}, [_info(1, "A", ["v"])], grants=25)
    nodes = _nodes(_ids("c", range(0, 60)), {1: _ids("c", range(50, 100))})  # 10 in common
    with pytest.raises(ValueError, match="minimum group size 25"):
        drive(algo, job, nodes)
    assert psi_align.ALIGNMENT not in nodes["provider:1"].state  # the provider never kept an alignment


def test_a_provider_refuses_repeated_or_foreign_elements_and_bad_positions() -> None:
    node = FakeNode("acme", {"local1": _ids("c", range(0, 10))})
    one = psi_align.ristretto.hash_to_group("c0001")
    with pytest.raises(StepRefused, match="repeats"):
        psi_align.node_step(
            node,
            "psi_exchange",
            {"dataset": "local1", "id_column": "id", "elements": psi_align.ristretto.pack([one] * 5)},
        )  # noqa: E501
    with pytest.raises(StepRefused) as bad:
        psi_align.node_step(
            node,
            "psi_exchange",
            {"dataset": "local1", "id_column": "id", "elements": psi_align.ristretto.pack([bytes(32)] * 2)},
        )  # noqa: E501
    assert bad.value.code == "bad_elements"
    node.state[psi_align.SECRET] = {"ids": [f"c{i:04d}" for i in range(10)]}
    for positions in ([1, 1], [3, 99]):
        with pytest.raises(StepRefused) as refused:
            psi_align.node_step(node, "psi_keep", {"positions": psi_align._pack_positions(positions)})
        assert refused.value.code == "bad_positions"


# --- vertical logistic regression ------------------------------------------------------

GUEST_FEATURES = [f"x{i}" for i in range(10)]
HOST_FEATURES = [f"x{i}" for i in range(20)]


def _lr_params(**extra: Any) -> dict[str, Any]:
    return {
        "consumer_dataset": "mine", "consumer_id_column": "id", "label_column": "y",
        "consumer_features": GUEST_FEATURES, "key_bits": 1024, "epochs": 8, "batch_size": 64,
        "learning_rate": 0.3, "l2": 0.01, "validation_fraction": 0.15, "tolerance": 0.0, **extra,
    }  # fmt: skip


def _reference_auc(l2: float) -> float:
    """Centralised scikit-learn on the joined training rows, with the same L2 (C = 1 / (l2 · n))."""
    g, h = _csv("guest_train.csv"), {r["id"]: r for r in _csv("host_train.csv")}
    x = np.array([[float(r[c]) for c in GUEST_FEATURES] + [float(h[r["id"]][c]) for c in HOST_FEATURES] for r in g])
    y = np.array([int(r["y"]) for r in g])
    gt, ht = _csv("guest_test.csv"), {r["id"]: r for r in _csv("host_test.csv")}
    xt = np.array([[float(r[c]) for c in GUEST_FEATURES] + [float(ht[r["id"]][c]) for c in HOST_FEATURES] for r in gt])
    yt = np.array([int(r["y"]) for r in gt])
    model = LogisticRegression(C=1 / (l2 * len(y)), max_iter=5000).fit(x, y)
    return float(roc_auc_score(yt, model.decision_function(xt)))


def _score_test(nodes: dict[str, FakeNode], host_features: dict[str, list[str]]) -> float:
    """Test AUC of the parts the nodes hold (a god's-eye check; scoring proper is its own step)."""
    guest = nodes["consumer"].state[hetero_lr.MODEL]
    gt = _csv("guest_test.csv")
    u = np.zeros(len(gt))
    zg = (np.array([[float(r[c]) for c in guest["features"]] for r in gt]) - guest["mean"]) / np.array(guest["std"])
    u += zg @ np.array(guest["w"])
    ht = {r["id"]: r for r in _csv("host_test.csv")}
    for key, cols in host_features.items():
        part = nodes[key].state[hetero_lr.MODEL]
        zh = (np.array([[float(ht[r["id"]][c]) for c in cols] for r in gt]) - part["mean"]) / np.array(part["std"])
        u += zh @ np.array(part["w"])
    return float(roc_auc_score([int(r["y"]) for r in gt], u))


def test_two_party_training_on_breast_cancer_matches_scikit_learn_within_0_005() -> None:
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))  # seeded: the validation split is the same every run
    host_rows = _csv("host_train.csv")
    job = _job(algo, _lr_params(), [_info(7, "host", HOST_FEATURES)], grants=20)
    nodes = _nodes(_csv("guest_train.csv"), {7: host_rows})
    trace: list[Any] = []
    out = drive(algo, job, nodes, trace=trace)
    ours, reference = _score_test(nodes, {"provider:7": HOST_FEATURES}), _reference_auc(0.01)
    assert abs(ours - reference) <= 0.005, (ours, reference)
    assert len(out["history"]) == 8 and out["rows"] == {"aligned": 426, "train": 362, "validation": 64}
    assert out["history"][-1]["train"]["log_loss"] < out["history"][0]["train"]["log_loss"]
    assert out["validation"]["auc"] > 0.98 and 0 <= out["validation"]["ks"] <= 1
    assert out["lift"]["auc"] == pytest.approx(
        out["validation"]["auc"] - out["own_data_only"]["validation"]["auc"], abs=1e-6
    )  # noqa: E501
    assert set(out["contributions"]) == {"provider:7"}
    assert len(out["roc"]["fpr"]) == len(out["roc"]["tpr"]) and out["roc"]["tpr"][-1] == 1.0
    assert set(out["contributions"]["provider:7"]) == {"dataset", "validation_auc_without", "auc_added"}
    assert len(out["guest_model"]["weights"]) == 10 and "host_model" not in out  # the host's part stays on it
    _check_privacy(job, nodes, trace)


def _check_privacy(job: JobView, nodes: dict[str, FakeNode], trace: list[Any]) -> None:
    public = he.PublicKey.from_json(job.state["public_key"])
    n, nsq = int(public.n), int(public.nsquare)
    first = next(t for t in trace if t[0] == "lr_forward" and (t[2]["epoch"], t[2]["batch"]) == (0, 0))
    cts = public.unpack(first[3]["enc"], 10_000)
    assert len(set(cts)) == len(cts) and 1 not in cts  # w_h = 0: every value 0, every ciphertext fresh
    # The guest's residual is re-randomised: dividing it by the hosts' sum gives no 1 + m·n.
    residual_in = next(t for t in trace if t[0] == "lr_residual")
    host_sum = public.unpack(residual_in[2]["host_sum"], 10_000)
    residual = public.unpack(residual_in[3]["residual"], 10_000)
    for c_sum, c_res in zip(host_sum, residual, strict=True):
        ratio = c_res * pow(c_sum, -1, nsq) % nsq
        assert (ratio - 1) % n != 0
    # A masked gradient tells the guest nothing of the host's: the values are far beyond any gradient.
    # The hub relays them sealed to the host: only that host's key opens them.
    decrypted = [t for t in trace if t[0] == "lr_decrypt"]
    assert decrypted and all(sealed.is_sealed(t[3]["values"]) for t in decrypted)
    opened = [sealed.open_body(t[3]["values"], nodes[t[2]["party"]].key) for t in decrypted]
    assert all(abs(int(v)) > 2**100 for values in opened for v in values)
    with pytest.raises(sealed.SealError):
        sealed.open_body(decrypted[0][3]["values"], nodes["consumer"].key)
    # No host weight, gradient or feature value in anything the guest received.
    host_keys = [p.key for p in job.providers]
    to_guest = repr([t[2] for t in trace if t[1] == "consumer"])
    for key in host_keys:
        weights = nodes[key].state[hetero_lr.MODEL]["w"]
        assert all(repr(round(w, 6))[:8] not in to_guest for w in weights if abs(w) > 1e-3)


def test_three_parties_train_and_each_host_shows_what_it_adds() -> None:
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))  # seeded: the validation split is the same every run
    rows = _csv("host_train.csv")
    part_a = [{"id": r["id"], **{c: r[c] for c in HOST_FEATURES[:10]}} for r in rows]
    part_b = [{"id": r["id"], **{c: r[c] for c in HOST_FEATURES[10:]}} for r in rows[40:]]  # 40 fewer rows
    job = _job(algo, _lr_params(epochs=6), [_info(1, "A", HOST_FEATURES[:10]), _info(2, "B", HOST_FEATURES[10:])])
    nodes = _nodes(_csv("guest_train.csv"), {1: part_a, 2: part_b})
    trace: list[Any] = []
    out = drive(algo, job, nodes, trace=trace)
    assert out["rows"]["aligned"] == 386
    assert set(out["contributions"]) == {"provider:1", "provider:2"}
    for c in out["contributions"].values():
        assert c["auc_added"] == pytest.approx(out["validation"]["auc"] - c["validation_auc_without"], abs=1e-6)
    ours = _score_test(nodes, {"provider:1": HOST_FEATURES[:10], "provider:2": HOST_FEATURES[10:]})
    assert ours > 0.99
    # With two hosts, the guest gets their partial scores only as a sum (one vector per epoch).
    evaluations = [t for t in trace if t[0] == "lr_evaluate"]
    assert len(evaluations) == 6 and all(set(t[2]) == {"epoch", "batch", "host_sum"} for t in evaluations)
    # Leave-one-host-out: the others' scores on the validation rows only, not on every aligned row.
    (finish,) = [t for t in trace if t[0] == "lr_finish"]
    public = he.PublicKey.from_json(job.state["public_key"])
    n_val = job.state["rows"] - job.state["n_train"]
    for packed in finish[2]["leave_out"].values():
        assert len(public.unpack(packed, 10_000)) == public.packed_count(n_val, hetero_lr.SCORE_SLOT)
    assert public.packed_count(n_val, hetero_lr.SCORE_SLOT) < public.packed_count(386, hetero_lr.SCORE_SLOT)
    _check_privacy(job, nodes, trace)


def test_early_stopping_ends_training_when_validation_loss_stops_improving() -> None:
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))  # seeded: the validation split is the same every run
    job = _job(algo, _lr_params(epochs=20, tolerance=0.5, batch_size=0), [_info(7, "host", HOST_FEATURES)], grants=20)
    nodes = _nodes(_csv("guest_train.csv"), {7: _csv("host_train.csv")})
    out = drive(algo, job, nodes)
    assert len(out["history"]) == 2  # the second epoch improves by less than 0.5


def test_parameters_are_validated_field_by_field() -> None:
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))  # seeded: the validation split is the same every run
    ds = [_info(7, "host", HOST_FEATURES)]
    bad = {
        "epochs": 0, "learning_rate": "fast", "l2": -1, "batch_size": 3, "key_bits": 512,
        "tolerance": math.inf, "validation_fraction": 0.9, "label_column": "", "consumer_features": "x0",
    }  # fmt: skip
    with pytest.raises(ParamError) as exc:
        algo.validate({"consumer_dataset": "mine", "consumer_id_column": "id", **bad, "colour": 1}, ds)
    assert set(exc.value.errors) == {*bad, "params"}
    with pytest.raises(ParamError) as exc:
        algo.validate(_lr_params(consumer_features=["y"]), ds)
    assert set(exc.value.errors) == {"consumer_features"}
    clean = algo.validate({"consumer_dataset": "mine", "consumer_id_column": "id", "label_column": "y"}, ds)
    assert clean["key_bits"] == 2048 and clean["epochs"] == 10 and clean["host_features"] == {"7": HOST_FEATURES}


def test_a_host_refuses_a_key_the_consumer_did_not_sign_and_a_guest_a_label_that_is_not_binary() -> None:
    host = FakeNode("acme", {"local7": _csv("host_train.csv")})
    host.consumer = FakeNode("bank", {})
    host.state[psi_align.ALIGNMENT] = {"ids": [r["id"] for r in _csv("host_train.csv")]}
    stranger = FakeNode("mallory", {})
    key = he.PrivateKey.generate(1024)
    statement = stranger.sign({"type": hetero_lr.JOB_KEY, "job": "job-1", "public_key": key.public.to_json()})
    body = {
        "public_key": key.public.to_json(),
        "key_statement": statement,
        "validation": "",
        "batch_size": 0,
        "learning_rate": 0.1,
        "l2": 0.0,
        "dataset": "local7",
        "id_column": "id",
        "features": HOST_FEATURES,
    }
    with pytest.raises(StepRefused) as refused:
        hetero_lr._host(host, "lr_host_setup", body, random.Random(1))
    assert refused.value.code == "unsigned_key"
    guest = FakeNode("bank", {"mine": [{"id": str(i), "y": "2", "x0": "1"} for i in range(30)]})
    guest.state[psi_align.ALIGNMENT] = {"ids": [str(i) for i in range(30)]}
    with pytest.raises(StepRefused) as refused:
        hetero_lr._guest(
            guest,
            "lr_setup",
            {
                "label_column": "y",
                "consumer_features": ["x0"],
                "dataset": "mine",
                "consumer_id_column": "id",
                "validation_fraction": 0.2,
                "key_bits": 1024,
                "batch_size": 0,
                "learning_rate": 0.1,
                "l2": 0.0,
                "hosts": {"provider:1": {"features": 1, "node_key": keys.public_b64(host.key)}},
            },
            random.Random(1),
        )  # noqa: E501
    assert refused.value.code == "bad_label"


# --- scoring with the parts the nodes kept -------------------------------------------------


MODEL_ID = "00000000-0000-0000-0000-000000000001"  # the training job's id names the model


def _train_as_model(nodes: dict[str, FakeNode], datasets: list[DatasetInfo], epochs: int) -> None:
    for node in nodes.values():
        node.job = MODEL_ID
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))  # seeded: the validation split is the same every run
    drive(algo, _job(algo, _lr_params(epochs=epochs), datasets), nodes)
    for node in nodes.values():
        node.job = "job-2"


def _score_job(model: str, datasets: list[DatasetInfo], **extra: Any) -> JobView:
    algo = get_algorithm("hetero_lr_score")
    params = {"model": model, "consumer_dataset": "score", "consumer_id_column": "id", "key_bits": 1024, **extra}
    job = _job(algo, params, datasets, grants=10)
    job.id = "job-2"
    return job


def test_a_trained_model_scores_new_records_and_each_host_counts_them() -> None:
    rows = _csv("host_train.csv") + _csv("host_test.csv")
    part_a = [{"id": r["id"], **{c: r[c] for c in HOST_FEATURES[:10]}} for r in rows]
    part_b = [{"id": r["id"], **{c: r[c] for c in HOST_FEATURES[10:]}} for r in rows]
    datasets = [_info(1, "A", HOST_FEATURES[:10]), _info(2, "B", HOST_FEATURES[10:])]
    nodes = _nodes(_csv("guest_train.csv"), {1: part_a, 2: part_b})
    nodes["consumer"].rows["score"] = _csv("guest_test.csv")
    for i, key in enumerate(("provider:1", "provider:2")):
        nodes[key].grant = {"right": 100 + i, "expires_at": "2999-01-01T00:00:00+00:00"}
    _train_as_model(nodes, datasets, epochs=4)
    trace: list[Any] = []
    out = drive(
        get_algorithm("hetero_lr_score"),
        _score_job(MODEL_ID, datasets),
        nodes,
        trace=trace,
    )  # noqa: E501
    assert out["scored"] == 143 and len(out["scores"]) == 143
    # The scores are the model's: the guest's part plus both hosts' parts, through the sigmoid.
    gt = {r["id"]: r for r in _csv("guest_test.csv")}
    parts = {**{"guest": nodes["consumer"].model_get(MODEL_ID, hetero_lr.MODEL)}}
    hosts = {"provider:1": HOST_FEATURES[:10], "provider:2": HOST_FEATURES[10:]}
    ht = {r["id"]: r for r in _csv("host_test.csv")}
    for ident, p in out["scores"][:20]:
        g = parts["guest"]
        u = float(
            ((np.array([float(gt[ident][c]) for c in g["features"]]) - g["mean"]) / np.array(g["std"]))
            @ np.array(g["w"])
        )  # noqa: E501
        for key, cols in hosts.items():
            h = nodes[key].model_get(MODEL_ID, hetero_lr.MODEL)
            u += float(
                ((np.array([float(ht[ident][c]) for c in cols]) - h["mean"]) / np.array(h["std"])) @ np.array(h["w"])
            )  # noqa: E501
        assert p == pytest.approx(1 / (1 + math.exp(-u)), abs=1e-5)
    auc = roc_auc_score([int(gt[i]["y"]) for i, _ in out["scores"]], [p for _, p in out["scores"]])
    assert abs(auc - _reference_auc(0.01)) <= 0.005
    partials = [t for t in trace if t[0] == "sc_partial"]
    assert sorted(t[5] for t in partials) == [143, 143]  # billed per scored record, by each host
    assert all(t[5] == 0 for t in trace if t[0] == "psi_keep")  # counted once, not again at alignment
    combine = next(t for t in trace if t[0] == "sc_combine")
    assert set(combine[2]) == {"host_sum", "model", "dataset", "id_column"}  # one summed vector, not per host


def test_a_host_scores_only_under_the_right_its_part_was_trained_for() -> None:
    rows = _csv("host_train.csv") + _csv("host_test.csv")
    datasets = [_info(7, "host", HOST_FEATURES)]
    nodes = _nodes(_csv("guest_train.csv"), {7: rows})
    nodes["consumer"].rows["score"] = _csv("guest_test.csv")
    nodes["provider:7"].grant = {"right": 5, "expires_at": "2999-01-01T00:00:00+00:00"}
    _train_as_model(nodes, datasets, epochs=1)
    nodes["provider:7"].grant = {"right": 6, "expires_at": "2999-01-01T00:00:00+00:00"}  # another right
    with pytest.raises(StepRefused) as refused:
        drive(get_algorithm("hetero_lr_score"), _score_job(MODEL_ID, datasets), nodes)
    assert refused.value.code == "not_permitted"
    nodes["provider:7"].states.pop(MODEL_ID)  # the part is gone (deleted when the right ended)
    nodes["provider:7"].grant = {"right": 5, "expires_at": "2999-01-01T00:00:00+00:00"}
    for node in nodes.values():
        node.states.pop("job-2", None)
    with pytest.raises(StepRefused) as refused:
        drive(get_algorithm("hetero_lr_score"), _score_job(MODEL_ID, datasets), nodes)
    assert refused.value.code == "no_model"


def test_a_step_asked_again_after_its_update_was_kept_is_not_applied_twice() -> None:
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))  # seeded: the validation split is the same every run
    nodes = _nodes(_csv("guest_train.csv"), {7: _csv("host_train.csv")})
    trace: list[Any] = []
    job = _job(algo, _lr_params(epochs=1), [_info(7, "host", HOST_FEATURES)], grants=20)
    drive(algo, job, nodes, trace=trace)
    host, guest = nodes["provider:7"], nodes["consumer"]
    update = next(t for t in reversed(trace) if t[0] == "lr_update")
    residual = next(t for t in reversed(trace) if t[0] == "lr_residual")
    # Put back the training state as it was after the last update (seal dropped it), then redeliver.
    host.state[hetero_lr.STATE] = {
        **host.state[hetero_lr.MODEL],
        "masks": {},
        "updated": f"{update[2]['epoch']}:{update[2]['batch']}",
        "validation": [],
        "batch_size": 64,
        "learning_rate": 0.3,
        "l2": 0.01,
        "public_key": job.state["public_key"],
    }  # noqa: E501
    w = list(host.state[hetero_lr.STATE]["w"])
    hetero_lr._host(host, "lr_update", update[2], random.Random(1))
    assert host.state[hetero_lr.STATE]["w"] == w  # the same weights: the update is not applied twice
    assert residual[0] == "lr_residual" and guest.state[hetero_lr.MODEL]["w"]  # the guest kept its part


def test_metrics_of_a_one_class_split_are_none_not_nan() -> None:
    from compute.algorithms import metrics

    out = metrics.summary(np.array([1.0, 1.0, 1.0]), np.array([0.2, 0.5, 0.9]))
    assert out["auc"] is None and out["log_loss"] is not None


def test_the_guest_is_no_decryption_oracle_for_the_hub() -> None:
    """A deviating hub asks the guest to decrypt what it should not: the residual, a host's
    forward pass, a second vector for one host and batch, a batch that is not the current one."""
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))
    job = _job(algo, {**_lr_params(), "epochs": 1}, [_info(7, "host", HOST_FEATURES)], grants=20)
    nodes = _nodes(_csv("guest_train.csv"), {7: _csv("host_train.csv")})
    guest = nodes["consumer"]
    guest.state_drop = lambda name: None  # type: ignore[method-assign]  # keep the key after the job, to ask again
    trace: list[Any] = []
    drive(algo, job, nodes, trace=trace)
    state = guest.state[hetero_lr.STATE]
    last = [t for t in trace if t[0] == "lr_decrypt"][-1][2]  # the honest last request
    residual = [t for t in trace if t[0] == "lr_residual"][-1][3]["residual"]
    forward = [t for t in trace if t[0] == "lr_forward"][-1][3]["enc"]
    state.update(decrypted=[])  # as if the honest request had not come yet: only the checks below stop it
    asks = {
        "the residual": {**last, "masked": residual},
        "a host's forward pass": {**last, "masked": forward},
        "another batch": {**last, "batch": last["batch"] + 1},
        "an unknown host": {**last, "party": "provider:99"},
    }
    for what, body in asks.items():
        with pytest.raises(StepRefused) as refused:
            algo.node_step(guest, "lr_decrypt", body)
        assert refused.value.code == "bad_decrypt", what
    algo.node_step(guest, "lr_decrypt", last)  # the one the protocol asks for
    with pytest.raises(StepRefused, match="already decrypted"):
        algo.node_step(guest, "lr_decrypt", last)


def test_rows_aligned_in_an_earlier_job_train_a_later_one_under_the_same_right_only() -> None:
    """A ``psi_align`` job leaves each node its alignment; a later ``hetero_lr`` names that job and
    trains on those rows without a new PSI. A node refuses it under another right or dataset."""
    first, second = "3f1c0d5e-0000-4000-8000-000000000001", "3f1c0d5e-0000-4000-8000-000000000002"
    nodes = _nodes(_csv("guest_train.csv"), {7: _csv("host_train.csv")})
    for node in nodes.values():
        node.job = first
    align = psi_align.PsiAlign(node_rng=random.Random(5))  # seeded blinding: the common order, and so the split, repeat
    job = _job(align, {"consumer_dataset": "mine", "consumer_id_column": "id"}, [_info(7, "host", HOST_FEATURES)], 20)
    job.id = first
    aligned = drive(align, job, nodes)["aligned_records"]
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))
    later = _job(algo, _lr_params(alignment_job=first), [_info(7, "host", HOST_FEATURES)], grants=20)
    later.id, later.params["aligned_rows"] = second, aligned  # what the hub adds after its own checks
    for node in nodes.values():
        node.job = second
    trace: list[Any] = []
    out = drive(algo, later, nodes, trace=trace)
    assert not [t for t in trace if t[0].startswith("psi_")]  # no second PSI
    assert out["rows"]["aligned"] == aligned == 426
    # The seeded blinding fixes the common order and so the 85-row validation split: the model
    # trained on the reused rows reaches 0.965 there, every run. Unseeded, the split changed from
    # run to run (0.978 in one, above 0.98 in others), and a 0.98 bound failed once in make test.
    assert out["validation"]["auc"] > 0.95, out["validation"]
    # Under another right, a provider does not lend an alignment made under the first.
    host = nodes["provider:7"]
    host.job, host.grant = "3f1c0d5e-0000-4000-8000-000000000003", {"right": 99}
    with pytest.raises(StepRefused, match="another right"):
        psi_align.reuse_alignment(host, first, "local7", "id")
    with pytest.raises(StepRefused, match="no alignment of this dataset"):
        psi_align.reuse_alignment(nodes["consumer"], first, "mine", "other_id")


def test_a_residual_asked_again_on_the_guest_is_the_same_and_its_update_is_not_applied_twice() -> None:
    """The guest's step redelivered after it kept its update (a crash before the reply left):
    the same residual plaintext, in a fresh ciphertext, and the weights moved once."""
    algo = hetero_lr.HeteroLR(node_rng=random.Random(11))
    nodes = _nodes(_csv("guest_train.csv"), {7: _csv("host_train.csv")})
    guest = nodes["consumer"]
    guest.state_drop = lambda name: None  # type: ignore[method-assign]  # keep the training state after the job
    trace: list[Any] = []
    job = _job(algo, _lr_params(epochs=1), [_info(7, "host", HOST_FEATURES)], grants=20)
    drive(algo, job, nodes, trace=trace)
    sent, first = next((t[2], t[3]) for t in reversed(trace) if t[0] == "lr_residual")
    state = guest.state[hetero_lr.STATE]
    assert state["updated"] == f"{sent['epoch']}:{sent['batch']}"
    w = list(state["w"])
    again = algo.node_step(guest, "lr_residual", sent).body
    key = he.PrivateKey.from_json(state["key"])
    before, after = (key.public.unpack(r["residual"], 10_000) for r in (first, again))
    assert before != after and key.decrypt(before) == key.decrypt(after)  # fresh randomness, same values
    assert guest.state[hetero_lr.STATE]["w"] == w  # not moved a second time
