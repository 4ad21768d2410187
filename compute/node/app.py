"""The node's Celery app: consumes only ``node.<slug>``, answers on ``hub``.

Started as ``python -m compute.node worker``; configured only from the environment.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange

from compute.node.config import NodeConfig, broker_settings
from compute.node.runtime import handle_step

HUB_TASK = "usufruct.hub.receive"
HUB_EXCHANGE = Exchange("hub", type="direct", no_declare=True)
NODE_TASK = "usufruct.node.run_step"


def make_app(config: NodeConfig) -> Celery:
    app = Celery(f"usufruct-node-{config.slug}")
    app.conf.update(
        **broker_settings(config.broker_url, config.broker_dir),
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=config.queue,
        worker_hijack_root_logger=False,
        # A step is idempotent on the node (nonces are remembered), so a redelivery after
        # a crash is safe: acknowledge late and requeue when the worker dies mid-step.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # No remote control: its pidbox exchange is not the node's to declare, and on a
        # RabbitMQ federation a node's broker user may configure only its own queue.
        worker_enable_remote_control=False,
    )

    @app.task(name=NODE_TASK)
    def run_step(wire: dict[str, Any]) -> None:
        for message in handle_step(config, wire):
            send_to_hub(app, message)

    return app


def send_to_hub(app: Celery, message: dict[str, Any]) -> None:
    """Publish to the hub's queue.

    On RabbitMQ the node publishes to the ``hub`` exchange without declaring anything (its
    broker user may write there, never configure or read it: docs/decisions/0010), with
    publisher confirms, so a refused or unroutable publish raises instead of vanishing.
    Elsewhere (Redis, the embedded filesystem broker) the queue is declared as it is sent.
    """
    if app.conf.broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        app.send_task(HUB_TASK, args=[message], exchange=HUB_EXCHANGE, routing_key="hub", mandatory=True)
    else:
        app.send_task(HUB_TASK, args=[message], queue="hub")
