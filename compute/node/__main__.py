"""Command line of a data node.

    python -m compute.node enroll --token=TOKEN   # make the key pair, register it (a token may begin with "-")
    python -m compute.node announce               # sign and send dataset manifests
    python -m compute.node worker                 # run the node worker
    python -m compute.node info                   # show slug, key id and datasets

Configuration comes from USUFRUCT_NODE_SLUG, USUFRUCT_NODE_DIR, CELERY_BROKER_URL and
(for the filesystem broker) USUFRUCT_BROKER_DIR.
"""

from __future__ import annotations

import argparse
import json
import sys

from compute.node.app import make_app, send_to_hub
from compute.node.config import NodeConfig, NodeConfigError
from compute.node.datasets import DatasetError
from compute.node.runtime import announcement_messages, enrolment_message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute.node")
    sub = parser.add_subparsers(dest="command", required=True)
    enroll = sub.add_parser("enroll", help="register this node's public key with the hub")
    enroll.add_argument("--token", help="one-time enrolment token (default: read enrol.token)")
    sub.add_parser("announce", help="send signed manifests of the datasets in datasets.json")
    worker = sub.add_parser("worker", help="run the node worker")
    worker.add_argument("--announce", action="store_true", help="enrol if a token file exists, announce, then serve")
    worker.add_argument("--loglevel", default="INFO")
    sub.add_parser("info", help="print this node's identity")
    args = parser.parse_args(argv)
    try:
        config = NodeConfig.from_env()
        app = make_app(config)
        if args.command == "enroll":
            token = args.token or _token_file(config)
            if not token:
                raise NodeConfigError("no --token given and no enrol.token file in the node directory")
            send_to_hub(app, enrolment_message(config, token))
            print(f"enrolment sent for node {config.slug} (key {config.kid})")
        elif args.command == "announce":
            _announce(app, config)
        elif args.command == "info":
            print(json.dumps({"slug": config.slug, "kid": config.kid, "queue": config.queue}))
        elif args.command == "worker":
            if args.announce:
                token = _token_file(config)
                if token:
                    send_to_hub(app, enrolment_message(config, token))
                    (config.directory / "enrol.token").unlink()
                _announce(app, config)
            app.worker_main(
                [
                    "worker",
                    "-Q",
                    config.queue,
                    "-n",
                    f"{config.slug}@%h",
                    "--pool=solo",
                    f"--loglevel={args.loglevel}",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ]
            )
    except (NodeConfigError, DatasetError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _token_file(config: NodeConfig) -> str | None:
    path = config.directory / "enrol.token"
    return path.read_text().strip() if path.exists() else None


def _announce(app, config: NodeConfig) -> None:  # type: ignore[no-untyped-def]
    messages = announcement_messages(config)
    for message in messages:
        send_to_hub(app, message)
    print(f"announced {len(messages)} dataset(s) from node {config.slug}")


if __name__ == "__main__":
    sys.exit(main())
