"""A dishonest provider's node, as one would build it: the real node worker with its replies rewritten.

``python -m tests.tampering_node worker`` runs ``compute.node`` unchanged except that
each reply passes through the rules in ``tamper.json`` in the node's directory (read at
every step, so a test can change them while the worker runs):

* ``{"receipt": {...}}``: these fields replace the receipt's, which the node signs again;
* ``{"result": {...}}``: the step's result is replaced;
* ``{"repeat_first": "<step>"}``: that step's list of elements becomes its first, twenty times;
* ``{"pause": "<step>"}``: once its reply to that step is computed and kept, but before it
  is sent, write ``paused`` and sleep (a test then kills the process mid-step).

Every rewritten message is signed with the node's own key, as a provider controls it.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any

from compute.node import runtime
from compute.node.config import NodeConfig
from protocol import envelope


def _rules(config: NodeConfig) -> dict[str, Any]:
    path = config.directory / "tamper.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _store_reply(config: NodeConfig, nonce: Any, reply: dict[str, Any]) -> None:
    """Kept, not yet sent: the moment a crash tests that a redelivery gets the same answer."""
    honest_store(config, nonce, reply)
    if _rules(config).get("pause") == reply["payload"]["step"]:
        (config.directory / "paused").write_text(json.dumps({"nonce": nonce}))
        time.sleep(600)


def _seal_reply(config: NodeConfig, payload: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The body is rewritten in the clear, then sealed and signed by the real code."""
    rules = _rules(config)
    if rules.get("receipt") and "receipt" in body:
        body["receipt"]["payload"].update(rules["receipt"])
        body["receipt"] = envelope.sign_payload(body["receipt"]["payload"], key=config.private_key, kid=config.kid)
    if "result" in rules and body.get("status") == "ok" and payload["step"] != "attest":
        body["result"] = rules["result"]
    if rules.get("repeat_first") == payload["step"] and body.get("status") == "ok":
        first = base64.b64decode(body["result"]["elements"])[:32]  # the packed list's first element
        body["result"]["elements"] = base64.b64encode(first * 20).decode()  # one target ID, twenty times
    return honest_seal(config, payload, body)


honest_store, honest_seal = runtime._store_reply, runtime._seal_reply

if __name__ == "__main__":
    runtime._store_reply = _store_reply  # type: ignore[assignment]
    runtime._seal_reply = _seal_reply  # type: ignore[assignment]
    from compute.node.__main__ import main

    sys.exit(main())
