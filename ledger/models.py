"""The append-only ledger. Rows are written once by ``ledger.services`` and never edited."""

from __future__ import annotations

from django.db import models


class LedgerEntry(models.Model):
    class Kind(models.TextChoices):
        DATASET_LISTED = "dataset_listed", "Dataset listed"
        OFFER_PUBLISHED = "offer_published", "Offer published"
        RIGHT_GRANTED = "right_granted", "Right granted"
        USAGE = "usage", "Usage"

    seq = models.PositiveBigIntegerField(unique=True)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    version = models.PositiveSmallIntegerField(default=1)
    event_id = models.CharField(max_length=100, unique=True)
    payload = models.JSONField()
    body = models.TextField()  # RFC 8785 canonical bytes of the entry (what is hashed and signed)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)
    leaf_hash = models.CharField(max_length=64)
    hub_kid = models.CharField(max_length=16)
    hub_sig = models.CharField(max_length=100)
    producer_time = models.DateTimeField()
    integrated_at = models.DateTimeField()
    # Denormalised keys for filters and reports (they are also inside ``payload``).
    dataset_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    consumer_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    provider_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    right_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"
