"""Run an algorithm's hub and node code in one process, each node a real ``compute.node`` context.

Each node has its own folder (its CSV files read by the node's dataset reader, its job
state written to its disk, its own Ed25519 key); each step is the algorithm's ``node_step``,
as the node runtime calls it, and each reply goes through the hub's ``on_result`` checks,
every message and the job state taken through RFC 8785 JSON as on the wire. Not timed here:
envelope signatures, sealing and the broker (the same for every algorithm; see
``hub_replies.py`` for the hub's side of them).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compute.algorithms.base import Algorithm, JobView, Party, Progress  # noqa: E402
from compute.node.config import NodeConfig  # noqa: E402
from compute.node.runtime import LocalContext  # noqa: E402
from protocol import keys  # noqa: E402
from protocol.canonical import canonical  # noqa: E402


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


class Federation:
    """A consumer node and provider nodes in ``folder``; ``datasets`` maps party key → (local name, rows)."""

    def __init__(self, folder: Path, datasets: dict[str, tuple[str, list[dict[str, Any]]]], job: str) -> None:
        self.configs: dict[str, NodeConfig] = {}
        for key, (local, rows) in datasets.items():
            slug = key.replace(":", "-")
            write_csv(folder / slug / "data" / f"{local}.csv", rows)
            self.configs[key] = NodeConfig(slug=slug, directory=folder / slug, broker_url="memory://", broker_dir=None)
        guest = self.configs["consumer"]
        self.consumer_node = {"kid": guest.kid, "public_key": keys.public_b64(guest.private_key)}
        self.job = job
        self.spent: dict[str, float] = {key: 0.0 for key in datasets} | {"hub": 0.0}
        self.wire: list[tuple[float, int]] = []  # (when, bytes) of every message, hub → node and back

    def view(self, params: dict[str, Any]) -> JobView:
        """The hub's view of a benchmark job over these nodes (a grant of ten-row groups, no expiry)."""
        grant = {"min_group_size": 10, "expires_at": "2999-01-01T00:00:00+00:00"}
        return JobView(id="bench", params=params, parties=self.parties(grant))

    def parties(self, grant: dict[str, Any]) -> list[Party]:
        guest = self.configs["consumer"]
        out = [Party("consumer", guest.slug, "consumer", node_key=keys.public_b64(guest.private_key))]
        for i, key in enumerate(k for k in self.configs if k != "consumer"):
            local = next((self.configs[key].data_dir).glob("*.csv")).stem
            g = {**grant, "right": i + 1, "node": self.configs[key].slug, "consumer_node": self.consumer_node}
            node_key = keys.public_b64(self.configs[key].private_key)
            out.append(Party(key, self.configs[key].slug, "provider", i + 1, local, g, node_key=node_key))
        return out

    def context(self, party: Party) -> LocalContext:
        return LocalContext(config=self.configs[party.key], job=self.job, min_group_size=10, grant=party.grant)

    def run(self, algo: Algorithm, job: JobView, on_step: Callable[[str, str], None] | None = None) -> dict[str, Any]:
        """Drive ``job`` to its end; returns its outputs. ``on_step(step, party)`` is called after each reply."""
        t = time.perf_counter()
        outbox = list(algo.start(job).sends)
        job.state = json.loads(canonical(job.state))
        self.spent["hub"] += time.perf_counter() - t
        outputs = None
        while outbox:
            send = outbox.pop(0)
            party = job.party(send.party)
            ctx = self.context(party)
            t = time.perf_counter()
            sent = canonical(send.body)
            result = algo.node_step(ctx, send.step, json.loads(sent))
            answer = canonical(result.body)
            reply = json.loads(answer)
            self.wire += [(t, len(sent)), (time.perf_counter(), len(answer))]
            for fn in ctx.after_reply:
                fn()
            self.spent[send.party] += time.perf_counter() - t
            t = time.perf_counter()
            progress: Progress = algo.on_result(job, send.step, send.party, reply)
            job.state = json.loads(canonical(job.state))
            self.spent["hub"] += time.perf_counter() - t
            if on_step is not None:
                on_step(send.step, send.party)
            outbox.extend(progress.sends)
            outputs = progress.outputs or outputs
        if outputs is None:
            raise RuntimeError(f"the job did not finish (phase {job.state.get('phase')!r})")
        return outputs

    def state(self, key: str, name: str) -> dict[str, Any]:
        path = self.configs[key].state_dir / self.job / f"{name}.json"
        value: dict[str, Any] = json.loads(path.read_text())
        return value
