"""FATE 2.2's coordinated hetero logistic regression on the breast-cancer vertical split, for side-by-side runs.

Run it with the interpreter of the FATE virtualenv (see README.md beside this file), never the project's own::

    /work/fate-venv/bin/python benchmarks/fate/run_fate_hetero_lr.py \\
        --data tests/data/breast_cancer --key-bits 1024 --epochs 5 --out /tmp/fate.json

Three processes (guest, host, arbiter) are started with FATE's standalone computing and federation backends
(no FATE-Flow, no network): the guest holds ``y`` and ``x0..x9``, the host ``x0..x19``, the arbiter the Paillier
key. Both sides are intersected with FATE's ECDH PSI first, as FATE's pipelines do, then FATE's
``CoordinatedLRModule*`` trains on the train split with the hyper-parameters of FATE 2.2's own benchmark
configuration (``examples/benchmark_quality/lr/breast_config.yaml``: rmsprop, learning rate 0.15, L2 alpha 0.01,
batch 240, constant scheduler at factor 0.5 for its first 5 steps, random-uniform init with seed 42, intercept,
early stop on loss ``diff`` with tol 1e-5 as its pipeline sets). The guest then scores the test split.

The JSON written to ``--out`` holds per-epoch seconds (guest wall clock from the start of one epoch to the start of
the next, the last one ending when ``fit`` returns), their median, the first epoch, the total ``fit`` seconds
(including the arbiter's key generation and the batch set-up before the first epoch), the test and train AUC, the
model, and a tally of the Paillier encryptions the guest and host made during ``fit`` with the ``obfuscate`` flag
FATE actually passed to its Rust encryptor (see README.md: the per-row vectors are not randomised).
"""

import argparse
import json
import logging
import multiprocessing
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PARTIES: tuple[tuple[str, str], ...] = (("guest", "9999"), ("host", "10000"), ("arbiter", "10001"))
DATA_FILES = ("guest_train.csv", "guest_test.csv", "host_train.csv", "host_test.csv")


@dataclass(frozen=True)
class RunConfig:
    """Everything a party process needs; plain values only, so that it crosses a ``spawn`` boundary."""

    data: str
    key_bits: int
    epochs: int
    batch_size: int | None
    lr: float
    alpha: float
    optimizer: str
    scheduler_factor: float
    scheduler_iters: int
    early_stop: str
    tol: float
    psi: bool
    work_dir: str
    federation_id: str
    log_level: str

    def optimizer_param(self) -> dict[str, Any]:
        return {"method": self.optimizer, "penalty": "l2", "alpha": self.alpha, "optimizer_params": {"lr": self.lr}}

    def scheduler_param(self) -> dict[str, Any]:
        return {
            "method": "constant",
            "scheduler_params": {"factor": self.scheduler_factor, "total_iters": self.scheduler_iters},
        }

    @staticmethod
    def init_param() -> dict[str, Any]:
        return {"method": "random_uniform", "fit_intercept": True, "random_state": 42}


# --------------------------------------------------------------------------------------------- party side


def _context(cfg: RunConfig, rank: int) -> Any:
    """A FATE ``Context`` for one party: standalone computing session, standalone federation on a shared dir."""
    from fate.arch.computing.backends.standalone import CSession
    from fate.arch.context import Context
    from fate.arch.federation import FederationBuilder

    role, party_id = PARTIES[rank]
    data_dir = Path(cfg.work_dir) / "fate"
    data_dir.mkdir(parents=True, exist_ok=True)
    computing = CSession(session_id=f"{cfg.federation_id}_{role}_{party_id}", data_dir=str(data_dir))
    federation = FederationBuilder(
        federation_session_id=cfg.federation_id, party=PARTIES[rank], parties=list(PARTIES)
    ).build_standalone(computing)
    ctx = Context(computing=computing, federation=federation)
    ctx.cipher.set_phe(ctx.device, {"kind": "paillier", "key_length": cfg.key_bits})
    return ctx


def _log_dir(cfg: RunConfig) -> Path:
    return Path(cfg.work_dir) / "encryptions"


def _frame(ctx: Any, path: Path, with_label: bool) -> Any:
    """Read one CSV into a FATE DataFrame the way FATE's upload config for this data set describes it."""
    from fate.arch.dataframe import CSVReader

    label = {"label_name": "y", "label_type": "int64"} if with_label else {}
    return CSVReader(match_id_name="id", dtype="float64", partition=4, **label).to_frame(ctx, str(path))


@contextmanager
def _epoch_marks() -> Iterator[list[float]]:
    """Record ``perf_counter`` at the start of each of the guest's epochs.

    FATE's guest estimator calls ``Optimizer.set_iters(i)`` once at the top of every epoch; the guest module's
    own reference to ``Optimizer`` is swapped for a subclass that notes the time there, for this process only.
    """
    from fate.ml.glm.hetero.coordinated_lr import guest as guest_module

    marks: list[float] = []
    base = guest_module.Optimizer

    class TimedOptimizer(base):  # type: ignore[misc, valid-type]
        def set_iters(self, new_iters: int) -> None:
            marks.append(time.perf_counter())
            super().set_iters(new_iters)

    guest_module.Optimizer = TimedOptimizer
    try:
        yield marks
    finally:
        guest_module.Optimizer = base


def _install_encryption_log(log_dir: Path, role: str) -> None:
    """Log every Paillier encryption this process makes, with the ``obfuscate`` flag FATE passed, to ``log_dir``.

    Each process appends ``monotonic-time kind obfuscate values seconds`` lines to a file of its own (``kind`` is
    ``requested`` for an estimator's ``encrypt_tensor`` call, ``performed`` for what reaches the Rust encryptor);
    ``_read_encryption_log`` sums them over a time window. FATE encrypts the per-row vectors (distributed tensors)
    in its standalone session's worker processes, which are spawned, not forked: ``_log_fate_workers`` carries
    this wrapper into them.
    """
    from fate.arch.protocol.phe import paillier
    from fate.arch.tensor.phe import _keypair

    real_encrypt = paillier.PK.encrypt_encoded
    real_tensor = _keypair.PHETensorEncryptor.encrypt_tensor

    def note(kind: str, obfuscate: bool, values: int, seconds: float) -> None:
        with (log_dir / f"{role}-{os.getpid()}.log").open("a") as f:
            f.write(f"{time.monotonic():.6f} {kind} {int(bool(obfuscate))} {values} {seconds:.6f}\n")

    def encrypt_encoded(self: Any, vec: Any, obfuscate: bool) -> Any:
        t = time.perf_counter()
        out = real_encrypt(self, vec, obfuscate)
        note("performed", obfuscate, len(out), time.perf_counter() - t)
        return out

    def encrypt_tensor(self: Any, tensor: Any, obfuscate: bool = False) -> Any:
        note("requested", obfuscate, 0, 0.0)
        return real_tensor(self, tensor, obfuscate)

    paillier.PK.encrypt_encoded = encrypt_encoded
    _keypair.PHETensorEncryptor.encrypt_tensor = encrypt_tensor


ENC_LOG_ENV = "FATE_BENCH_ENCRYPTION_LOG"


def _worker_initializer(*args: Any) -> None:
    """Initializer of FATE's standalone worker pool: install the encryption log, then run FATE's own initializer.

    It runs in a freshly spawned worker, whose copy of FATE's module still holds FATE's own initializer.
    """
    from fate.arch.computing.backends.standalone import _standalone

    log_dir, role = os.environ[ENC_LOG_ENV].split(os.pathsep)
    _install_encryption_log(Path(log_dir), role)
    _standalone._watch_thread_react_to_parent_die(*args)


def _log_fate_workers(log_dir: Path, role: str) -> None:
    """Make the worker pools FATE creates from now on in this process log their encryptions too."""
    from fate.arch.computing.backends.standalone import _standalone

    os.environ[ENC_LOG_ENV] = f"{log_dir}{os.pathsep}{role}"
    _standalone._watch_thread_react_to_parent_die = _worker_initializer


def _read_encryption_log(log_dir: Path, role: str, start: float, end: float) -> dict[str, Any]:
    """Sum one party's encryption log lines (all its processes) that fall in ``[start, end]`` (monotonic)."""
    tally: dict[str, Any] = {
        "encrypt_tensor_calls": {"obfuscate=True": 0, "obfuscate=False": 0},
        "values_encrypted": {"obfuscate=True": 0, "obfuscate=False": 0},
        "encrypt_seconds": 0.0,
        "processes": 0,
    }
    for path in sorted(log_dir.glob(f"{role}-*.log")):
        used = False
        for line in path.read_text().splitlines():
            at, kind, flag, values, seconds = line.split()
            if not start <= float(at) <= end:
                continue
            used = True
            key = f"obfuscate={flag == '1'}"
            if kind == "requested":
                tally["encrypt_tensor_calls"][key] += 1
            else:
                tally["values_encrypted"][key] += int(values)
                tally["encrypt_seconds"] += float(seconds)
        tally["processes"] += used
    return tally


def _scores(frame: Any) -> tuple[list[int], list[float]]:
    pdf = frame.as_pd_df()
    return pdf["label"].astype(int).tolist(), pdf["predict_score"].astype(float).tolist()


def _run_arbiter(ctx: Any, cfg: RunConfig) -> dict[str, Any]:
    from fate.ml.glm import CoordinatedLRModuleArbiter

    module = CoordinatedLRModuleArbiter(
        epochs=cfg.epochs,
        early_stop=cfg.early_stop,
        tol=cfg.tol,
        batch_size=cfg.batch_size,
        optimizer_param=cfg.optimizer_param(),
        learning_rate_param=cfg.scheduler_param(),
    )
    t0 = time.perf_counter()
    module.fit(ctx.sub_ctx("fit"))
    estimator = module.estimator
    return {
        "fit_seconds": time.perf_counter() - t0,
        "end_epoch": estimator.end_epoch,
        "converged": bool(estimator.is_converged),
    }


def _run_data_party(ctx: Any, cfg: RunConfig, is_guest: bool) -> dict[str, Any]:
    from fate.ml.glm import CoordinatedLRModuleGuest, CoordinatedLRModuleHost

    side = "guest" if is_guest else "host"
    data = Path(cfg.data)
    out: dict[str, Any] = {}
    train = _frame(ctx, data / f"{side}_train.csv", with_label=is_guest)
    test = _frame(ctx, data / f"{side}_test.csv", with_label=is_guest)
    out["rows_read"] = {"train": train.shape[0], "test": test.shape[0]}
    if cfg.psi:
        from fate.arch.protocol.psi import psi_run

        t0 = time.perf_counter()
        train = psi_run(ctx.sub_ctx("psi_train"), train, "ecdh_psi", "curve25519")
        out["psi_train_seconds"] = time.perf_counter() - t0
        test = psi_run(ctx.sub_ctx("psi_test"), test, "ecdh_psi", "curve25519")
        out["rows_after_psi"] = {"train": train.shape[0], "test": test.shape[0]}

    common = {
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optimizer_param": cfg.optimizer_param(),
        "learning_rate_param": cfg.scheduler_param(),
        "init_param": cfg.init_param(),
        "floating_point_precision": 23,
    }
    module = CoordinatedLRModuleGuest(threshold=0.5, **common) if is_guest else CoordinatedLRModuleHost(**common)

    with _epoch_marks() as marks:
        m0, t0 = time.monotonic(), time.perf_counter()
        module.fit(ctx.sub_ctx("fit"), train)
        t1, m1 = time.perf_counter(), time.monotonic()
    out["fit_seconds"] = t1 - t0
    out["encryptions_during_fit"] = _read_encryption_log(_log_dir(cfg), side, m0, m1)
    out["worker_start_method"] = multiprocessing.get_start_method()
    if is_guest:
        out["epoch_seconds"] = [b - a for a, b in zip(marks, [*marks[1:], t1], strict=True)]
        out["before_first_epoch_seconds"] = (marks[0] - t0) if marks else None

    t0 = time.perf_counter()
    test_pred = module.predict(ctx.sub_ctx("predict_test"), test)
    out["predict_test_seconds"] = time.perf_counter() - t0
    train_pred = module.predict(ctx.sub_ctx("predict_train"), train)
    if is_guest:
        from sklearn.metrics import roc_auc_score

        for name, pred in (("test", test_pred), ("train", train_pred)):
            labels, scores = _scores(pred)
            out[f"auc_{name}"] = float(roc_auc_score(labels, scores))
            out[f"accuracy_{name}"] = sum((s > 0.5) == (y == 1) for y, s in zip(labels, scores, strict=True)) / len(
                labels
            )
            out[f"rows_{name}"] = len(labels)
    estimator = module.get_model()["data"]["estimator"]
    out["model"] = {"header": estimator["header"], **estimator["param"]}
    return out


def party_main(rank: int, cfg_fields: dict[str, Any], results: Any, release: Any) -> None:
    """Entry point of one spawned party process: run its role, report on ``results``, then wait for ``release``."""
    cfg = RunConfig(**cfg_fields)
    role = PARTIES[rank][0]
    logging.basicConfig(level=cfg.log_level, format=f"[{role}] %(levelname)s %(name)s: %(message)s")
    ctx = None
    try:
        if role != "arbiter":
            _log_dir(cfg).mkdir(parents=True, exist_ok=True)
            _install_encryption_log(_log_dir(cfg), role)
            _log_fate_workers(_log_dir(cfg), role)
        ctx = _context(cfg, rank)
        report = _run_arbiter(ctx, cfg) if role == "arbiter" else _run_data_party(ctx, cfg, role == "guest")
        results.put((role, "ok", json.loads(json.dumps(report, default=str))))
    except BaseException:  # the parent must hear of any failure, or it waits for nothing
        results.put((role, "error", traceback.format_exc()))
    # Keep the session (and the tables the peers may still pull) until every party has reported.
    release.wait(timeout=600)
    if ctx is not None:
        with suppress(Exception):  # tearing down a finished run
            ctx.destroy()


# --------------------------------------------------------------------------------------------- parent side


def run_parties(cfg: RunConfig, timeout_s: float) -> dict[str, Any]:
    """Start guest, host and arbiter, wait for all three, and return each role's report.

    Raises ``RuntimeError`` with the failing party's traceback if any party fails, or on timeout.
    """
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    release = mp.Event()
    procs = [
        mp.Process(target=party_main, args=(rank, asdict(cfg), results, release), name=f"fate-{role}")
        for rank, (role, _) in enumerate(PARTIES)
    ]
    for p in procs:
        p.start()
    reports: dict[str, Any] = {}
    failure: str | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while len(reports) < len(PARTIES) and failure is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = f"timed out after {timeout_s:.0f}s; reported: {sorted(reports)}"
                break
            try:
                role, status, payload = results.get(timeout=min(remaining, 5.0))
            except queue.Empty:  # look for a dead child, then wait on
                dead = [p.name for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    failure = f"party process died without reporting: {dead}"
                continue
            if status == "ok":
                reports[role] = payload
            else:
                failure = f"{role} failed:\n{payload}"
    finally:
        release.set()
        for p in procs:
            p.join(timeout=30)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
    if failure is not None:
        raise RuntimeError(failure)
    return reports


def randomisation_probe(key_bits: int, obfuscate: bool) -> dict[str, Any]:
    """Encrypt one vector twice through FATE's Paillier with the given flag; are the two ciphertexts the same?"""
    import pickle

    import torch
    from fate.arch.protocol.phe.paillier import keygen

    _sk, pk, coder = keygen(key_bits)
    plain = coder.encode_tensor(torch.tensor([0.25, -0.5, 0.125], dtype=torch.float64), torch.float64)
    first = pickle.dumps(pk.encrypt_encoded(plain, obfuscate=obfuscate))
    second = pickle.dumps(pk.encrypt_encoded(plain, obfuscate=obfuscate))
    return {"obfuscate": obfuscate, "same_ciphertext_twice": first == second}


def summarise(cfg: RunConfig, reports: dict[str, Any], wall_seconds: float) -> dict[str, Any]:
    guest, host, arbiter = reports["guest"], reports["host"], reports["arbiter"]
    epochs = guest["epoch_seconds"]
    fields = asdict(cfg)
    for transient in ("work_dir", "federation_id", "log_level"):
        fields.pop(transient)
    return {
        "implementation": "FATE 2.2 CoordinatedLR (pyfate), standalone backends, 3 processes",
        "fate_version": _version("pyfate"),
        "config": fields,
        "epochs_run": len(epochs),
        "converged_early": arbiter["converged"],
        "epoch_seconds": epochs,
        "median_epoch_seconds": statistics.median(epochs) if epochs else None,
        "first_epoch_seconds": epochs[0] if epochs else None,
        "total_seconds": guest["fit_seconds"],
        "total_epoch_seconds": sum(epochs),
        "before_first_epoch_seconds": guest["before_first_epoch_seconds"],
        "test_auc": guest["auc_test"],
        "train_auc": guest["auc_train"],
        "test_accuracy": guest["accuracy_test"],
        "rows": {"train": guest["rows_train"], "test": guest["rows_test"]},
        "psi_train_seconds": guest.get("psi_train_seconds"),
        "predict_test_seconds": guest["predict_test_seconds"],
        "wall_seconds": wall_seconds,
        "encryptions_during_fit": {
            "guest": guest["encryptions_during_fit"],
            "host": host["encryptions_during_fit"],
        },
        "model": {"guest": guest["model"], "host": host["model"]},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="folder with guest_/host_ train/test CSVs")
    p.add_argument("--key-bits", type=int, default=1024, help="Paillier key length (FATE's minimum is 1024)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", required=True, type=Path, help="where to write the JSON result")
    p.add_argument("--batch-size", type=int, default=240, help="0 for full batch")
    p.add_argument("--lr", type=float, default=0.15)
    p.add_argument("--alpha", type=float, default=0.01, help="L2 penalty")
    p.add_argument("--optimizer", default="rmsprop")
    p.add_argument("--scheduler-factor", type=float, default=0.5, help="ConstantLR factor (FATE's config: 0.5)")
    p.add_argument("--scheduler-iters", type=int, default=5, help="ConstantLR total_iters (FATE's config: 5)")
    p.add_argument("--early-stop", default="diff", choices=["diff", "abs", "weight_diff"])
    p.add_argument("--tol", type=float, default=1e-5, help="early-stop tolerance; 0 never stops early")
    p.add_argument("--no-psi", action="store_true", help="skip FATE's ECDH PSI (the ids already match row by row)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before the run is abandoned")
    p.add_argument("--keep-work-dir", action="store_true", help="keep FATE's standalone data dir for inspection")
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = args.data.resolve()
    missing = [f for f in DATA_FILES if not (data / f).is_file()]
    if missing:
        print(f"missing in {data}: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.epochs < 1 or args.key_bits < 1024:
        print("--epochs must be >= 1 and --key-bits >= 1024", file=sys.stderr)
        return 2
    work_dir = tempfile.mkdtemp(prefix="fate-hetero-lr-")
    cfg = RunConfig(
        data=str(data),
        key_bits=args.key_bits,
        epochs=args.epochs,
        batch_size=args.batch_size or None,
        lr=args.lr,
        alpha=args.alpha,
        optimizer=args.optimizer,
        scheduler_factor=args.scheduler_factor,
        scheduler_iters=args.scheduler_iters,
        early_stop=args.early_stop,
        tol=args.tol,
        psi=not args.no_psi,
        work_dir=work_dir,
        federation_id=f"hetero-lr-{uuid.uuid4().hex[:12]}",
        log_level=args.log_level.upper(),
    )
    t0 = time.perf_counter()
    try:
        reports = run_parties(cfg, args.timeout)
    except RuntimeError as e:
        print(f"FATE run failed: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    result = summarise(cfg, reports, time.perf_counter() - t0)
    result["randomisation_probe"] = [randomisation_probe(cfg.key_bits, flag) for flag in (False, True)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    med = result["median_epoch_seconds"]
    print(
        f"FATE hetero LR, {cfg.key_bits}-bit Paillier, {result['epochs_run']} epochs: "
        f"median {med:.3f} s/epoch, first {result['first_epoch_seconds']:.3f} s, "
        f"fit {result['total_seconds']:.2f} s, test AUC {result['test_auc']:.5f} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
