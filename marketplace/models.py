"""Marketplace data: organisations, nodes, datasets, offers, orders and usage rights.

Models hold fields, choices and constraints; workflows live in ``services.py``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Organization(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.TextField(blank=True)
    is_provider = models.BooleanField(default=False)
    is_consumer = models.BooleanField(default=False)
    is_regulator = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # What an invoice or statement names the organisation by, beside its name.
    billing_address = models.TextField(blank=True)
    tax_id = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="one_membership")]


class Node(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting enrolment"
        ACTIVE = "active", "Active"
        DISABLED = "disabled", "Disabled"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="nodes")
    slug = models.SlugField(max_length=60, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    enrolment_token_hash = models.CharField(max_length=64, blank=True)
    public_key = models.CharField(max_length=64, blank=True)
    kid = models.CharField(max_length=16, blank=True, db_index=True)
    enrolled_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def queue(self) -> str:
        return f"node.{self.slug}"


class Dataset(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="datasets")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="datasets")
    local_name = models.CharField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    columns = models.JSONField(default=list)
    row_count = models.PositiveBigIntegerField()
    content_sha256 = models.CharField(max_length=64)
    manifest = models.JSONField()  # the node-signed envelope, kept as attested
    attested_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    # The dataset's lifetime privacy budget, shared by every buyer (marketplace.budget): None sets
    # no cap beyond each right's own. ``epsilon_spent`` counts released and reserved ε.
    epsilon_budget = models.DecimalField(max_digits=7, decimal_places=3, null=True, blank=True)
    epsilon_spent = models.DecimalField(max_digits=15, decimal_places=3, default=0)  # uncapped, it keeps counting

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["node", "local_name"], name="dataset_per_node"),
            models.CheckConstraint(
                condition=Q(epsilon_budget__isnull=True) | Q(epsilon_spent__lte=F("epsilon_budget")),
                name="dataset_epsilon_within_budget",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def epsilon_left(self) -> Decimal | None:
        return None if self.epsilon_budget is None else self.epsilon_budget - self.epsilon_spent


class Offer(models.Model):
    class Status(models.TextChoices):
        PUBLISHED = "published", "Published"
        RETIRED = "retired", "Retired"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="offers")
    title = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PUBLISHED)
    operations = models.JSONField(default=list)
    duration_days = models.PositiveIntegerField(default=365)
    quota_jobs = models.PositiveIntegerField(default=10)
    min_group_size = models.PositiveIntegerField(default=10)
    terms = models.TextField(blank=True)
    # Privacy budget a right may spend on differentially private releases (0 = no DP releases).
    epsilon = models.DecimalField(max_digits=6, decimal_places=3, default=0)
    dp_required = models.BooleanField(default=False)  # every release under it must be differentially private
    allowed_purposes = models.JSONField(default=list, blank=True)  # empty: any declared purpose
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-published_at"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "title", "version"], name="offer_version"),
            models.CheckConstraint(condition=Q(quota_jobs__gt=0), name="offer_quota_positive"),
            models.CheckConstraint(condition=Q(duration_days__gt=0), name="offer_duration_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.title} v{self.version}"


class PricePlan(models.Model):
    class Kind(models.TextChoices):
        PER_JOB = "per_job", "Per job"
        PER_1000_ROWS = "per_1000_rows", "Per 1,000 rows processed"
        PER_RECORD = "per_record", "Per scored record"
        SUBSCRIPTION = "subscription", "Subscription"
        FREE = "free", "Free"

    class Billing(models.TextChoices):
        PREPAID = "prepaid", "Prepaid"
        POSTPAID = "postpaid", "Postpaid (invoiced)"

    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="plans")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.PER_JOB)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    billing = models.CharField(max_length=10, choices=Billing.choices, default=Billing.POSTPAID)
    included_units = models.PositiveIntegerField(default=0)
    overage_minor = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gte=0), name="plan_amount_nonnegative"),
            models.CheckConstraint(condition=Q(overage_minor__gte=0), name="plan_overage_nonnegative"),
        ]

    def snapshot(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "billing": self.billing,
            "included_units": self.included_units,
            "overage_minor": self.overage_minor,
        }


class Order(models.Model):
    class Status(models.TextChoices):
        """Where the order stands for billing (derived, never stored: :attr:`Order.status`)."""

        PREPAID = "prepaid", "Prepaid"  # charged in full at purchase
        POSTPAID_OPEN = "postpaid_open", "Postpaid, open"  # use is billed as it is delivered
        SETTLED = "settled", "Settled"  # the right has ended and nothing is left to charge

    consumer = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="orders")
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="orders")
    plan = models.ForeignKey(PricePlan, on_delete=models.PROTECT, related_name="orders")
    purpose = models.TextField()
    purpose_category = models.CharField(max_length=100, blank=True)
    accepted_terms = models.TextField()  # copied: the text the buyer agreed to
    plan_kind = models.CharField(max_length=20)
    unit_price_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    plan_snapshot = models.JSONField(default=dict)  # the whole plan as sold (billing.Plan)
    upfront_minor = models.BigIntegerField(default=0)  # charged at purchase (prepaid bundle, period fee)
    quota_jobs = models.PositiveIntegerField()
    duration_days = models.PositiveIntegerField()
    operations = models.JSONField()
    idempotency_key = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["consumer", "idempotency_key"], name="order_idempotency"),
        ]

    @property
    def status(self) -> str:
        """Prepaid, postpaid and still open, or settled (its right ended with no job in flight)."""
        right = getattr(self, "right", None)
        if right is not None and right.status != UsageRight.Status.ACTIVE and not right.quota_reserved:
            return self.Status.SETTLED
        if self.plan_snapshot.get("billing") == "prepaid":
            return self.Status.PREPAID
        return self.Status.POSTPAID_OPEN

    def get_status_display(self) -> str:
        return str(self.Status(self.status).label)


class UsageRight(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXHAUSTED = "exhausted", "Exhausted"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="right")
    consumer = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="rights")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="rights")
    operations = models.JSONField()
    quota_total = models.PositiveIntegerField()
    quota_used = models.PositiveIntegerField(default=0)
    quota_reserved = models.PositiveIntegerField(default=0)
    min_group_size = models.PositiveIntegerField()
    # The dataset's attested row count when the right was sold: a receipt's rows are bounded
    # by it (and by the current count), so a provider cannot raise what it meters by
    # re-announcing its dataset after the sale (decision 0009).
    row_count = models.PositiveBigIntegerField(null=True, blank=True)
    epsilon_total = models.DecimalField(max_digits=6, decimal_places=3, default=0)
    epsilon_spent = models.DecimalField(max_digits=6, decimal_places=3, default=0)
    dp_required = models.BooleanField(default=False)  # as sold: the offer demanded DP for every release
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quota_used__lte=F("quota_total") - F("quota_reserved")),
                name="right_never_oversold",
            ),
            models.CheckConstraint(
                condition=Q(epsilon_spent__lte=F("epsilon_total")), name="right_epsilon_within_budget"
            ),
        ]

    @property
    def quota_left(self) -> int:
        return self.quota_total - self.quota_used - self.quota_reserved


class Document(models.Model):
    """An issued invoice, credit note or provider statement (``marketplace.invoicing``): its JSON
    form as issued, with every line's ledger entry and proof. Immutable: a trigger refuses
    updates and deletes (migration 0007)."""

    class Type(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"
        STATEMENT = "statement", "Statement"

    type = models.CharField(max_length=12, choices=Type.choices)
    year = models.PositiveSmallIntegerField()
    sequence = models.PositiveIntegerField()  # per type and year, from 1, without gaps
    number = models.CharField(max_length=30, unique=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="documents")
    period_start = models.DateField()
    period_end = models.DateField()
    currency = models.CharField(max_length=3)
    total_minor = models.BigIntegerField()  # an invoice's or credit note's total; a statement's net
    issued_at = models.DateTimeField()
    checkpoint_size = models.PositiveBigIntegerField()
    digest = models.CharField(max_length=64)
    body = models.JSONField()
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes")
    ledger_seq = models.PositiveBigIntegerField(unique=True)  # its ``document_issued`` entry

    class Meta:
        ordering = ["-issued_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["type", "year", "sequence"], name="document_number_once")]

    def __str__(self) -> str:
        return self.number


class DocumentLine(models.Model):
    """A charged ledger entry on a document. Once per family: on one invoice or credit note
    (``buyer``) and on one statement (``seller``), so nothing is charged or paid twice."""

    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="lines")
    family = models.CharField(max_length=6)  # buyer | seller
    seq = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["family", "seq"], name="entry_on_one_document")]

    def __str__(self) -> str:
        return f"{self.document} #{self.seq}"


class BudgetAlert(models.Model):
    """A consumer's monthly spending limit in one currency: one email (Django's email backend)
    the first time a UTC month's delivered charges reach it (``marketplace.spending``)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="budget_alerts")
    currency = models.CharField(max_length=3)
    limit_minor = models.BigIntegerField()
    email = models.EmailField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    notified_period = models.CharField(max_length=7, blank=True)  # the last month it fired, YYYY-MM
    notified_at = models.DateTimeField(null=True, blank=True)
    notified_spent_minor = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["currency"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "currency"], name="one_budget_alert_per_currency"),
            models.CheckConstraint(condition=Q(limit_minor__gt=0), name="budget_alert_limit_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.organization} {self.currency} {self.limit_minor}"
