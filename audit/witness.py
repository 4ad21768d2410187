"""A regulator's witness: ``python -m audit.witness {keygen,cosign}``. Standard library + ``cryptography``.

``cosign`` fetches the hub's latest checkpoint, checks the log's signature with the
pinned log key, checks it is consistent (RFC 9162 §2.1.4) with the last checkpoint
this witness cosigned (kept in a small state file), adds a cosignature/v1 line
(c2sp.org/tlog-cosignature) and posts it back. It refuses, and exits non-zero, on a
smaller tree, a different root at the same size, or a failed consistency proof:
then the hub has shown two histories, and the state file is the evidence.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import checkpoint as notes
from protocol import merkle

Fetch = Callable[[str, str, dict[str, Any] | None], dict[str, Any]]
"""``fetch(method, path, json_body)`` → decoded JSON answer of the hub; raises on HTTP errors."""


class WitnessError(Exception):
    """The hub's checkpoint cannot be cosigned: bad signature, rollback or fork."""


@dataclass
class Outcome:
    size: int
    previous: int | None
    cosigned: bool
    message: str


def http_fetch(base_url: str, token: str, timeout: float = 30.0) -> Fetch:
    def fetch(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Token {token}")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())

    return fetch


def load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise WitnessError(f"{path} is not an Ed25519 private key")
    return key


def keygen(path: Path, name: str) -> str:
    """Create the witness key (mode 0600) if absent and return its cosigner vkey (type 0x04)."""
    path = Path(path)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    public = load_key(path).public_key().public_bytes_raw()
    return notes.encode_vkey(name, public, notes.SIG_COSIGNATURE_V1)


def _read_state(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)  # atomic: a crash never leaves half a state


def cosign(
    *, fetch: Fetch, log_vkey: str, name: str, key: Ed25519PrivateKey, state_file: Path, now: int | None = None
) -> Outcome:
    """Check and cosign the hub's latest checkpoint; raise :class:`WitnessError` if it cannot be trusted."""
    vk = notes.parse_vkey(log_vkey)
    try:
        latest = fetch("GET", "/api/ledger/checkpoints/latest/", None)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        return Outcome(0, None, False, "no checkpoint yet: nothing to cosign")
    note = str(latest["note"]).encode()
    try:
        cp = notes.open_checkpoint(note, vk.name, vk.public_key)
    except notes.CheckpointError as exc:
        raise WitnessError(f"the hub's checkpoint does not verify: {exc}") from None
    state = _read_state(state_file)
    previous = None
    if state is not None:
        if state.get("origin") != cp.origin:
            raise WitnessError(f"checkpoint is for {cp.origin!r}, this witness follows {state.get('origin')!r}")
        previous = int(state["size"])
        old_root = base64.b64decode(state["root"])
        if cp.size < previous:
            raise WitnessError(f"rollback: the hub shows size {cp.size} after this witness cosigned {previous}")
        if cp.size == previous and cp.root != old_root:
            raise WitnessError(f"fork: two roots for size {cp.size}")
        if cp.size > previous:
            answer = fetch("GET", f"/api/ledger/proofs/consistency/?from={previous}&to={cp.size}", None)
            proof = [base64.b64decode(h) for h in answer["proof"]]
            try:
                # Roots come from the signed checkpoint and our own state, never from the answer.
                merkle.verify_consistency(previous, cp.size, proof, old_root, cp.root)
            except merkle.ProofError as exc:
                raise WitnessError(f"fork: checkpoint {cp.size} is not consistent with {previous}: {exc}") from None
    mine = {s.name for s in notes.parse_note(str(latest.get("note", "")).encode()).signatures}
    if name in mine and state is not None and previous == cp.size:
        return Outcome(cp.size, previous, False, f"checkpoint {cp.size} is already cosigned")
    cosigned = notes.add_cosignature(note, name, key, now)
    fetch("POST", f"/api/ledger/checkpoints/{cp.size}/cosignatures/", {"note": cosigned.decode()})
    _write_state(
        state_file,
        {"origin": cp.origin, "size": cp.size, "root": base64.b64encode(cp.root).decode(), "note": note.decode()},
    )
    return Outcome(cp.size, previous, True, f"cosigned checkpoint {cp.size} (previous {previous})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.witness", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    kg = sub.add_parser("keygen", help="create the witness key and print its vkey")
    kg.add_argument("--key", required=True, type=Path)
    kg.add_argument("--name", required=True)
    cs = sub.add_parser("cosign", help="check and cosign the hub's latest checkpoint")
    cs.add_argument("--url", required=True, help="the hub, e.g. http://127.0.0.1:8000")
    cs.add_argument("--token", default=os.environ.get("USUFRUCT_WITNESS_TOKEN", ""), help="API token of the regulator")
    cs.add_argument("--key", required=True, type=Path)
    cs.add_argument("--name", required=True)
    cs.add_argument("--log-key", required=True, help="the log's vkey, pinned out of band")
    cs.add_argument("--state", required=True, type=Path, help="file remembering the last cosigned checkpoint")
    cs.add_argument(
        "--every",
        type=float,
        default=0,
        metavar="SECONDS",
        help="keep running: cosign every SECONDS; stop (exit 1) only on a fork or rollback, retry other errors",
    )
    args = parser.parse_args(argv)
    if args.command == "keygen":
        print(keygen(args.key, args.name))
        return 0
    if args.every < 0:
        print("error: --every must not be negative", file=sys.stderr)
        return 2

    said: set[str] = set()  # in --every mode, each message once: quiet until there is something new

    def say(message: str, *, error: bool = False) -> None:
        if args.every and message in said:
            return
        said.add(message)
        print(message, file=sys.stderr if error else sys.stdout, flush=True)

    def once() -> int:
        try:
            outcome = cosign(
                fetch=http_fetch(args.url, args.token),
                log_vkey=args.log_key,
                name=args.name,
                key=load_key(args.key),
                state_file=args.state,
            )
        except WitnessError as exc:
            print(f"REFUSED: {exc}", file=sys.stderr, flush=True)
            return 1
        except (OSError, ValueError, KeyError) as exc:
            say(f"error: {exc} (retrying every {args.every:g} s)" if args.every else f"error: {exc}", error=True)
            return 2
        if outcome.cosigned or not args.every:  # in --every mode nothing to cosign is not news
            print(outcome.message, flush=True)
        said.difference_update({m for m in said if m.startswith("error:")})  # the hub answered: errors may recur
        return 0

    if not args.every:
        return once()
    try:
        while (status := once()) != 1:  # a hub that forked or rolled back is never cosigned again
            time.sleep(args.every)
    except KeyboardInterrupt:
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
