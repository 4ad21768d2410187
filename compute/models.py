"""Jobs, their parties and every message exchanged with nodes."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    consumer = models.ForeignKey("marketplace.Organization", on_delete=models.PROTECT, related_name="jobs")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    consumer_node = models.ForeignKey("marketplace.Node", on_delete=models.PROTECT, related_name="jobs")
    algorithm = models.CharField(max_length=40)
    params = models.JSONField()
    preview = models.BooleanField(default=False)  # a free, noised overlap preview before buying
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    state = models.JSONField(default=dict)  # the algorithm's hub-side scratch (ciphertexts only)
    outputs = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["consumer", "idempotency_key"], name="job_idempotency"),
        ]

    # What names a job for a person, by algorithm: the parameter that says what it computes.
    _SUBJECT = {"stats": ("of", "column"), "hetero_lr": ("predicting", "label_column"),
                "homo_lr": ("predicting", "label"), "hetero_lr_score": ("of", "consumer_dataset"),
                "psi": ("by", "consumer_id_column"),
                "psi_align": ("by", "consumer_id_column")}  # fmt: skip

    @property
    def title(self) -> str:
        """The job in words, e.g. "stats of tenure_months on Acme shopper behaviour 2026"."""
        params = self.params or {}
        word, key = self._SUBJECT.get(self.algorithm, ("", ""))
        subject = params.get(key) if key else None
        names = [p.dataset.name for p in self.parties.all() if p.role == "provider" and p.dataset is not None]
        kind = "overlap preview" if self.preview else self.algorithm
        what = f"{kind} {word} {subject}" if isinstance(subject, str) and subject else kind
        return f"{what} on {', '.join(names)}" if names else what


class JobParty(models.Model):
    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"
        DONE = "done", "Done"
        REFUSED = "refused", "Refused"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="parties")
    key = models.CharField(max_length=40)
    role = models.CharField(max_length=10)  # consumer | provider
    node = models.ForeignKey("marketplace.Node", on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey(
        "marketplace.Dataset", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    right = models.ForeignKey(
        "marketplace.UsageRight", null=True, blank=True, on_delete=models.PROTECT, related_name="job_parties"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    # Set once the reserved quota unit was consumed (output delivered) or released.
    quota_settled = models.BooleanField(default=False)
    # The ``usage`` entries recorded for this party: [[seq, rows, records], ...]; the job's
    # settlement names them (docs/decisions/0009-metering.md).
    usage = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "key"], name="party_key_per_job")]


class Message(models.Model):
    """Every signed envelope in or out, with its hash: the redelivery and replay guard."""

    class Direction(models.TextChoices):
        IN = "in", "Node → hub"
        OUT = "out", "Hub → node"

    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    step = models.CharField(max_length=40)
    round = models.PositiveIntegerField(default=0)
    sender = models.CharField(max_length=60)
    recipient = models.CharField(max_length=60)
    nonce = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, unique=True)
    kid = models.CharField(max_length=16)
    # For a node's reply: the digest of the hub message it answers. Unique, so a step is
    # answered at most once; the hub accepts no reply it did not ask for.
    in_reply_to = models.CharField(max_length=64, null=True, blank=True)
    envelope = models.JSONField()  # as it travelled: signed, its body sealed to the recipient
    body = models.JSONField(default=dict)  # the body the hub wrote (out) or opened (in)
    # A reply the hub refused after reading it (a usage receipt that fails a check): kept,
    # with the named reason, as evidence of what the node claimed.
    refused_code = models.CharField(max_length=40, blank=True)
    refused_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["sender", "nonce"], name="message_nonce_once"),
            models.UniqueConstraint(
                fields=["in_reply_to"], condition=models.Q(in_reply_to__isnull=False), name="message_answered_once"
            ),
        ]
