"""The append-only ledger. Rows are written once by ``ledger.services`` and never edited.

PostgreSQL enforces it: triggers reject UPDATE/DELETE/TRUNCATE on every table here
except ``Witness`` and ``RefusedReceipt``, which are bookkeeping, not evidence (see
migration 0004 and docs/decisions/0001-ledger-append-only.md).
"""

from __future__ import annotations

from django.db import models


class LedgerEntry(models.Model):
    class Kind(models.TextChoices):
        DATASET_LISTED = "dataset_listed", "Dataset listed"
        OFFER_PUBLISHED = "offer_published", "Offer published"
        RIGHT_GRANTED = "right_granted", "Right granted"
        USAGE = "usage", "Usage"
        RIGHT_REVOKED = "right_revoked", "Right revoked"
        RIGHT_EXPIRED = "right_expired", "Right expired"
        REFUND = "refund", "Refund"
        DP_CHARGE = "dp_charge", "Privacy budget charged"
        KEY_ROTATED = "key_rotated", "Key rotated"
        CORRECTION = "correction", "Correction"
        RECEIPT_BATCH = "receipt_batch", "Receipt batch attested"
        NODE_ENROLLED = "node_enrolled", "Node enrolled"
        SETTLEMENT = "settlement", "Job settled"
        MODEL_RETIRED = "model_retired", "Model part deleted"
        MODEL_RETIRE_REFUSED = "model_retire_refused", "Model part deletion refused"
        ALIGNMENT_FORGET_REFUSED = "alignment_forget_refused", "Alignment deletion refused"
        DATASET_BUDGET_SET = "dataset_budget_set", "Dataset privacy budget set"
        DOCUMENT_ISSUED = "document_issued", "Invoice or statement issued"

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
    provider_id = models.BigIntegerField(null=True, blank=True)  # indexed with seq below
    right_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "ledger entries"
        # A provider's entries in log order: receipt batches walk them from the last batch on.
        indexes = [models.Index(fields=["provider_id", "seq"], name="ledger_provider_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"


class PendingEntry(models.Model):
    """An entry a hub worker accepted and the ledger writer has not yet integrated (``ledger.writer``).

    Bookkeeping, not evidence: deleted in the transaction that puts the entry on the log.
    ``payload_json`` is the payload's RFC 8785 text, made by the hub worker that accepted
    the reply, so the writer, which holds the ledger lock, neither parses nor serialises it.
    """

    kind = models.CharField(max_length=30)
    event_id = models.CharField(max_length=100, unique=True)
    payload_json = models.TextField()
    producer_time = models.DateTimeField()
    dataset_id = models.BigIntegerField(null=True, blank=True)
    consumer_id = models.BigIntegerField(null=True, blank=True)
    provider_id = models.BigIntegerField(null=True, blank=True)
    right_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"pending {self.kind} {self.event_id}"


class MerkleNode(models.Model):
    """MTH(D[index * 2**level : (index + 1) * 2**level]): one complete, aligned subtree (RFC 9162 §2.1.1).

    Level 0 holds the leaf hashes. Written with the entry that completes the subtree,
    so every proof is assembled from O(log n) of these rows, never by rehashing.
    """

    pk = models.CompositePrimaryKey("level", "index")
    level = models.PositiveSmallIntegerField()
    index = models.PositiveBigIntegerField()
    hash = models.BinaryField(max_length=32)

    def __str__(self) -> str:
        return f"({self.level}, {self.index})"


class Checkpoint(models.Model):
    """A signed tree head in the C2SP tlog-checkpoint format; ``note`` is what the hub signed."""

    size = models.PositiveBigIntegerField(unique=True)
    root = models.BinaryField(max_length=32)
    origin = models.CharField(max_length=200)
    note = models.TextField()  # checkpoint text + the hub's signature line, no cosignatures
    key_name = models.CharField(max_length=200)
    hub_kid = models.CharField(max_length=16)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-size"]

    def __str__(self) -> str:
        return f"checkpoint {self.size}"

    @property
    def root_hex(self) -> str:
        return bytes(self.root).hex()


class Witness(models.Model):
    """A regulator's cosigning key (signed-note vkey of type 0x04, cosignature/v1)."""

    organization_id = models.BigIntegerField(db_index=True)
    name = models.CharField(max_length=200, unique=True)
    vkey = models.CharField(max_length=300, unique=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Cosignature(models.Model):
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="cosignatures")
    witness = models.ForeignKey(Witness, on_delete=models.PROTECT, related_name="cosignatures")
    timestamp = models.PositiveBigIntegerField()  # seconds since the epoch, as signed by the witness
    line = models.TextField()  # the signed-note signature line, ready to append to the note
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["checkpoint", "witness"]
        constraints = [models.UniqueConstraint(fields=["checkpoint", "witness"], name="one_cosignature_per_witness")]

    def __str__(self) -> str:
        return f"{self.witness} on {self.checkpoint}"


class RefusedReceipt(models.Model):
    """A ``usage`` entry whose receipt its node refused to attest (it has no record of signing it).

    Left out of every later receipt batch, so that the node's other receipts are still
    batched; its own signature stays its only attestation. A node that lost its state, or
    a receipt the node never issued: either way, worth a look (listed in the admin).
    """

    node = models.CharField(max_length=60, db_index=True)
    seq = models.PositiveBigIntegerField(unique=True)
    digest = models.CharField(max_length=64)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"#{self.seq} refused by {self.node}"
