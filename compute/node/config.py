"""Node configuration, read only from the node's own environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol import keys


class NodeConfigError(RuntimeError):
    pass


def broker_settings(url: str | None, broker_dir: str | None) -> dict[str, Any]:
    """Celery broker settings shared by hub and nodes (filesystem transport needs a folder)."""
    url = url or "filesystem://"
    options: dict[str, Any] = {}
    if url.startswith("filesystem"):
        if not broker_dir:
            raise NodeConfigError("USUFRUCT_BROKER_DIR is required with the filesystem broker")
        Path(broker_dir).mkdir(parents=True, exist_ok=True)
        options = {
            "data_folder_in": broker_dir,
            "data_folder_out": broker_dir,
            "store_processed": False,
            "polling_interval": 0.2,  # the default 1 s adds a second to every hop of a job
            "control_folder": str(Path(broker_dir) / "control"),  # exchange tables; the default is ./control
        }
    elif url.startswith(("amqp://", "amqps://", "pyamqp://")):
        options = {"confirm_publish": True}
    return {"broker_url": url, "broker_transport_options": options}


@dataclass(frozen=True)
class NodeConfig:
    slug: str
    directory: Path
    broker_url: str
    broker_dir: str | None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> NodeConfig:
        env = dict(os.environ if environ is None else environ)
        try:
            slug = env["USUFRUCT_NODE_SLUG"]
            directory = Path(env["USUFRUCT_NODE_DIR"]).resolve()
        except KeyError as exc:
            raise NodeConfigError(f"environment variable {exc.args[0]} is required") from None
        return cls(
            slug=slug,
            directory=directory,
            broker_url=env.get("CELERY_BROKER_URL", "filesystem://"),
            broker_dir=env.get("USUFRUCT_BROKER_DIR"),
        )

    @property
    def queue(self) -> str:
        return f"node.{self.slug}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @cached_property
    def private_key(self) -> Ed25519PrivateKey:
        return keys.load_or_create_private_key(self.directory / "node_ed25519.pem")

    @cached_property
    def kid(self) -> str:
        return keys.key_id(self.private_key)

    @cached_property
    def hub_public_key(self) -> Ed25519PublicKey:
        path = self.directory / "hub.pub"
        if not path.exists():
            raise NodeConfigError(f"{path} is missing: copy the hub's public key there")
        return keys.public_from_b64(path.read_text().strip())

    @cached_property
    def policy(self) -> dict[str, Any]:
        path = self.directory / "policy.json"
        policy: dict[str, Any] = {"operations": ["stats"], "min_group_size": 10}
        if path.exists():
            policy.update(json.loads(path.read_text()))
        return policy

    def dataset_specs(self) -> list[dict[str, Any]]:
        path = self.directory / "datasets.json"
        if not path.exists():
            return []
        specs = json.loads(path.read_text())
        if not isinstance(specs, list):
            raise NodeConfigError(f"{path} must hold a JSON list")
        return specs
