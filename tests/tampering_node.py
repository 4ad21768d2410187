"""A dishonest provider's node, as one would build it: the real node worker with its replies rewritten.

``python -m tests.tampering_node worker`` runs ``compute.node`` unchanged except that
each reply passes through the rules in ``tamper.json`` in the node's directory (read at
every step, so a test can change them while the worker runs):

* ``{"receipt": {...}}``: these fields replace the receipt's, which the node signs again;
* ``{"result": {...}}``: the step's result is replaced;
* ``{"pause": "<step>"}``: before computing that step, write ``paused`` and sleep (a test
  then kills the process mid-step).

Every rewritten message is signed with the node's own key, as a provider controls it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from compute.node import app as node_app
from compute.node import runtime
from compute.node.config import NodeConfig
from compute.protocol import envelope


def _rules(config: NodeConfig) -> dict[str, Any]:
    path = config.directory / "tamper.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _sign(config: NodeConfig, wire: dict[str, Any]) -> dict[str, Any]:
    return envelope.sign_payload(wire["payload"], key=config.private_key, kid=config.kid)


def handle_step(config: NodeConfig, wire: dict[str, Any]) -> list[dict[str, Any]]:
    rules = _rules(config)
    step = (wire.get("payload") or {}).get("step")
    if rules.get("pause") and rules["pause"] == step:
        (config.directory / "paused").write_text(step)
        time.sleep(600)
    replies = runtime.handle_step(config, wire)
    out = []
    for reply in replies:
        body = reply["payload"]["body"]
        if rules.get("receipt") and "receipt" in body:
            body["receipt"]["payload"].update(rules["receipt"])
            body["receipt"] = _sign(config, body["receipt"])
            reply = _sign(config, reply)
        if "result" in rules and body.get("status") == "ok" and step not in ("attest", None):
            body["result"] = rules["result"]
            reply = _sign(config, reply)
        out.append(reply)
    return out


if __name__ == "__main__":
    node_app.handle_step = handle_step  # type: ignore[assignment]  # what the node's task calls
    from compute.node.__main__ import main

    sys.exit(main())
