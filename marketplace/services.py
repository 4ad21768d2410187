"""Every write of the marketplace: nodes, datasets, offers, orders and usage rights.

Each service is atomic and keyword-only. Ledger entries are appended in the same
transaction as the change they record, so neither exists without the other.
Lock order: usage rights (by id) → ledger head. Rights' life cycle: ``marketplace.rights``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from ledger.services import entry_append
from marketplace import billing, idempotency
from marketplace.exceptions import Conflict, Forbidden, Invalid, NotFound, invalid, missing
from marketplace.models import Dataset, Node, Offer, Order, Organization, PricePlan, UsageRight
from protocol import keys
from protocol.bins import edges_problem
from protocol.envelope import Opened, parse_time
from protocol.operations import OPERATIONS

# --- nodes ------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# A node's name: it names broker queues (``node.<slug>``) and appears in every signed message.
NODE_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
MAX_PENDING_NODES = 5  # nodes awaiting enrolment per organisation


def node_create(*, organization: Organization, slug: str) -> tuple[Node, str]:
    """A node awaiting enrolment, and its one-time token (shown once, stored hashed).

    The slug is 1–40 lower-case letters, digits and inner hyphens; an organisation has at
    most :data:`MAX_PENDING_NODES` nodes awaiting enrolment at a time."""
    if not (organization.is_provider or organization.is_consumer):
        raise Forbidden("only provider or consumer organisations run nodes")
    if not isinstance(slug, str) or not NODE_SLUG.fullmatch(slug) or slug == "hub":
        raise invalid("slug", "1 to 40 lower-case letters, digits and inner hyphens (e.g. acme-eu-1).")
    token = secrets.token_urlsafe(24)
    try:
        with transaction.atomic():
            Organization.objects.select_for_update().filter(pk=organization.pk).first()  # one count at a time
            pending = Node.objects.filter(organization=organization, status=Node.Status.PENDING).count()
            if pending >= MAX_PENDING_NODES:
                raise Conflict(
                    f"your organisation already has {pending} nodes awaiting enrolment; enrol or remove one first",
                    fields={"slug": [f"At most {MAX_PENDING_NODES} nodes may await enrolment."]},
                    code="too_many_pending_nodes",
                )
            node = Node.objects.create(organization=organization, slug=slug, enrolment_token_hash=_token_hash(token))
    except IntegrityError:
        raise Conflict(
            f"a node named {slug!r} already exists", fields={"slug": [f"A node named {slug!r} already exists."]}
        ) from None
    return node, token


def node_enrol(*, opened: Opened) -> Node:
    """Register the public key a node generated, against its one-time token.

    The envelope was signed by the key it presents (proof of possession). A repeat of
    the same enrolment is a no-op; a second key for the same token is refused.
    """
    body = opened.payload["body"]
    public = keys.public_from_b64(body["public_key"])
    if keys.key_id(public) != opened.kid:
        raise invalid("kid", "key id does not match the presented key")
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(slug=opened.payload["sender"]).first()
        if node is None or node.enrolment_token_hash == "":
            if node is not None and node.kid == opened.kid:
                return node
            raise Forbidden("unknown node or enrolment already used")
        if not secrets.compare_digest(node.enrolment_token_hash, _token_hash(str(body["token"]))):
            raise Forbidden("bad enrolment token")
        if node.kid and node.kid != opened.kid:
            # A key rotation: the old key stops being accepted now; receipts it signed stay
            # verifiable because this entry publishes it.
            entry_append(
                kind="key_rotated",
                event_id=f"key_rotated:node:{node.slug}:{opened.kid}",
                payload={
                    "key": "node",
                    "node": node.slug,
                    "organization": node.organization_id,
                    "old_kid": node.kid,
                    "old_public_key": node.public_key,
                    "new_kid": opened.kid,
                    "new_public_key": body["public_key"],
                    "enrolment_digest": opened.digest,
                },
                provider_id=node.organization_id,
            )
        elif not node.kid:
            # The node's key goes on the signed log: the offline verifier takes node keys
            # from these entries (and key_rotated), never from the hub's live tables.
            entry_append(
                kind="node_enrolled",
                event_id=f"node_enrolled:{node.slug}:{opened.kid}",
                payload={
                    "node": node.slug,
                    "organization": node.organization_id,
                    "kid": opened.kid,
                    "public_key": body["public_key"],
                    "enrolment_digest": opened.digest,
                },
                provider_id=node.organization_id,
            )
        node.public_key = body["public_key"]
        node.kid = opened.kid
        node.enrolment_token_hash = ""
        node.status = Node.Status.ACTIVE
        node.enrolled_at = node.last_seen_at = timezone.now()
        node.save()
    return node


def node_rekey(*, organization: Organization, slug: str) -> tuple[Node, str]:
    """A one-time token with which the node enrols a new key (e.g. after a compromise)."""
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(slug=slug, organization=organization).first()
        if node is None:
            raise NotFound("no such node")
        token = secrets.token_urlsafe(24)
        node.enrolment_token_hash = _token_hash(token)
        node.save(update_fields=["enrolment_token_hash"])
    return node, token


def node_public_key(kid: str) -> Any:
    node = Node.objects.filter(kid=kid, status=Node.Status.ACTIVE).first()
    return keys.public_from_b64(node.public_key) if node else None


# --- datasets -----------------------------------------------------------------------------


def _manifest_errors(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """A node's manifest is a claim too: every field that reaches the ledger has its type."""
    errors: dict[str, list[str]] = {}
    for field in ("local", "name", "columns", "row_count", "sha256"):
        if field not in manifest:
            errors[field] = ["This field is required."]
    if errors:
        return errors
    for field in ("local", "name"):
        if not isinstance(manifest[field], str) or not 0 < len(manifest[field]) <= 200:
            errors[field] = ["A name of 1 to 200 characters."]
    count = manifest["row_count"]
    if type(count) is not int or not 0 <= count <= 10**12:
        errors["row_count"] = ["A whole number of rows."]
    digest = manifest["sha256"]
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        errors["sha256"] = ["A SHA-256 hex digest."]
    columns = manifest["columns"]
    if (
        not isinstance(columns, list)
        or not columns
        or not all(
            isinstance(c, dict)
            and all(isinstance(c.get(k), str) for k in ("name", "type", "role"))
            and c["role"] in ("id", "feature", "label")
            and c["type"] in ("number", "integer", "string")
            for c in columns
        )
    ):
        errors["columns"] = ["Columns with a name, a type (number, integer, string) and a role (id, feature, label)."]
    else:
        for c in columns:
            if "bins" in c and (c["type"] == "string" or edges_problem(c["bins"])):
                problem = edges_problem(c["bins"]) or "only a numeric column has bins."
                errors.setdefault("columns", []).append(f"bins of {c['name']!r}: {problem}")
    return errors


def dataset_register(*, node: Node, opened: Opened) -> Dataset:
    """List (or refresh) a dataset from its node-signed manifest. Rows never arrive here."""
    manifest = opened.payload["body"].get("manifest")
    if not isinstance(manifest, dict):
        raise invalid("manifest", "A manifest is an object.")
    errors = _manifest_errors(manifest)
    if errors:
        raise Invalid("invalid manifest", fields=errors)
    if not node.organization.is_provider and not node.organization.is_consumer:
        raise Forbidden("organisation cannot list datasets")
    with transaction.atomic():
        dataset, created = Dataset.objects.select_for_update().get_or_create(
            node=node,
            local_name=manifest["local"],
            defaults={
                "organization": node.organization,
                "name": manifest["name"],
                "description": manifest.get("description", ""),
                "tags": manifest.get("tags", []),
                "columns": manifest["columns"],
                "row_count": manifest["row_count"],
                "content_sha256": manifest["sha256"],
                "manifest": {"payload": opened.payload, "kid": opened.kid},
                "attested_at": parse_time(opened.payload["issued_at"]),
            },
        )
        if not created and dataset.content_sha256 != manifest["sha256"]:
            dataset.columns = manifest["columns"]
            dataset.row_count = manifest["row_count"]
            dataset.content_sha256 = manifest["sha256"]
            dataset.manifest = {"payload": opened.payload, "kid": opened.kid}
            dataset.attested_at = parse_time(opened.payload["issued_at"])
            dataset.save()
        elif not created:
            return dataset
        entry_append(
            kind="dataset_listed",
            event_id=f"dataset_listed:{opened.digest}",
            payload={
                "dataset": dataset.id,
                "provider": node.organization_id,
                "node": node.slug,
                "node_kid": opened.kid,
                "manifest_digest": opened.digest,
                "row_count": dataset.row_count,
                "content_sha256": dataset.content_sha256,
            },
            dataset_id=dataset.id,
            provider_id=node.organization_id,
        )
    return dataset


# --- offers ---------------------------------------------------------------------------------


def _plans_from(plans: list[dict[str, Any]], quota: int) -> tuple[list[billing.Plan], dict[str, list[str]]]:
    """Validate plan dicts; errors are keyed ``plans[i].field`` so a form can show them."""
    parsed: list[billing.Plan] = []
    errors: dict[str, list[str]] = {}
    if not plans:
        errors["plans"] = ["Give at least one price plan."]
    currencies = set()
    for i, raw in enumerate(plans):
        prefix = f"plans[{i}]." if len(plans) > 1 else ""
        plan = billing.Plan(
            kind=raw.get("kind", billing.PER_JOB),
            amount_minor=raw.get("amount_minor", 0),
            currency=raw.get("currency"),  # type: ignore[arg-type]  # validated just below
            billing=raw.get("billing", billing.POSTPAID),
            included_units=raw.get("included_units", 0),
            overage_minor=raw.get("overage_minor", 0),
        )
        try:
            billing.validate_plan(plan, quota=quota if isinstance(quota, int) else 0)
        except billing.PlanError as exc:
            for field, msgs in exc.errors.items():
                errors[prefix + field] = msgs
            continue
        currencies.add(plan.currency)
        parsed.append(plan)
    if len(currencies) > 1:
        errors["plans"] = ["All plans of one offer use the same currency."]
    return parsed, errors


def offer_publish(
    *,
    organization: Organization,
    dataset: Dataset,
    title: str,
    operations: list[str],
    quota_jobs: int,
    duration_days: int,
    plans: list[dict[str, Any]] | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
    min_group_size: int = 10,
    terms: str = "",
    epsilon: Decimal | float | str = 0,
    allowed_purposes: list[str] | None = None,
    dp_required: bool = False,
) -> Offer:
    """Publish an offer (a new version when the title exists). Published offers never change.

    ``plans`` lists price plans; ``amount_minor`` + ``currency`` is shorthand for one
    postpaid per-job plan.
    """
    if dataset.organization_id != organization.id:
        raise Forbidden("you can only offer your own datasets")
    if plans is None:
        plans = [{"kind": billing.PER_JOB, "amount_minor": amount_minor, "currency": currency}]
    parsed, errors = _plans_from(plans, quota_jobs)
    unknown = [op for op in operations if op not in OPERATIONS]
    if not operations:
        errors["operations"] = ["Permit at least one operation."]
    elif unknown:
        errors["operations"] = [f"Unknown operation(s): {', '.join(unknown)}."]
    if not title.strip():
        errors["title"] = ["This field is required."]
    for name, value in (
        ("quota_jobs", quota_jobs),
        ("duration_days", duration_days),
        ("min_group_size", min_group_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors[name] = ["Must be a whole number of at least 1."]
    try:
        eps = Decimal(str(epsilon))
        if not (Decimal(0) <= eps <= Decimal(100)) or eps.as_tuple().exponent < -3:  # type: ignore[operator]
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errors["epsilon"] = ["Privacy budget ε must be a number between 0 and 100 with at most 3 decimals."]
        eps = Decimal(0)
    purposes = [p.strip() for p in (allowed_purposes or []) if p and p.strip()]
    if dp_required and eps == 0 and "epsilon" not in errors:
        errors["epsilon"] = ["An offer that requires differential privacy needs a privacy budget ε above 0."]
    if errors:
        raise Invalid("invalid offer", fields=errors)
    with transaction.atomic():
        # The dataset row serialises publications of its offers (version numbers stay unique).
        Dataset.objects.select_for_update().filter(id=dataset.id).values_list("id", flat=True).first()
        earlier = Offer.objects.filter(dataset=dataset, title=title.strip())
        version = earlier.count() + 1
        # A new version replaces the listed one; rights already sold keep their copied terms.
        earlier.filter(status=Offer.Status.PUBLISHED).update(status=Offer.Status.RETIRED)
        offer = Offer.objects.create(
            dataset=dataset,
            title=title.strip(),
            version=version,
            operations=sorted(set(operations)),
            quota_jobs=quota_jobs,
            duration_days=duration_days,
            min_group_size=min_group_size,
            terms=terms,
            epsilon=eps,
            dp_required=dp_required,
            allowed_purposes=purposes,
        )
        rows = [PricePlan.objects.create(offer=offer, **plan.as_dict()) for plan in parsed]
        entry_append(
            kind="offer_published",
            event_id=f"offer_published:{offer.id}",
            payload={
                "offer": offer.id,
                "version": offer.version,
                "dataset": dataset.id,
                "provider": organization.id,
                "operations": offer.operations,
                "plans": [{"id": row.id, **row.snapshot()} for row in rows],
                "terms": {
                    "quota_jobs": quota_jobs,
                    "duration_days": duration_days,
                    "min_group_size": min_group_size,
                    "epsilon": str(eps),
                    "dp_required": dp_required,
                    "allowed_purposes": purposes,
                    "text": terms,
                },
            },
            dataset_id=dataset.id,
            provider_id=organization.id,
        )
    return offer


def offer_retire(*, organization: Organization, offer_id: int) -> Offer:
    """Withdraw an offer from sale; rights already sold are unaffected."""
    with transaction.atomic():
        offer = Offer.objects.select_for_update().select_related("dataset").filter(id=offer_id).first()
        if offer is None:
            raise NotFound("no such offer")
        if offer.dataset.organization_id != organization.id:
            raise Forbidden("you can only retire your own offers")
        if offer.status == Offer.Status.RETIRED:
            return offer
        offer.status = Offer.Status.RETIRED
        offer.save(update_fields=["status"])
        entry_append(
            kind="offer_published",
            event_id=f"offer_retired:{offer.id}",
            payload={"offer": offer.id, "version": offer.version, "dataset": offer.dataset_id, "status": "retired"},
            dataset_id=offer.dataset_id,
            provider_id=organization.id,
        )
    return offer


# --- orders ---------------------------------------------------------------------------------


def order_place(
    *,
    consumer: Organization,
    buyer: AbstractBaseUser,
    offer_id: int,
    plan_id: int | None,
    purpose: str,
    accept_terms: bool,
    idempotency_key: str,
    purpose_category: str = "",
    again: bool = False,
) -> tuple[Order, bool]:
    """Buy a usage right. Returns (order, created); a repeated key returns the first order.

    The order copies the plan and the terms; later versions of the offer never change it.
    Buying while an active right on the same dataset is held needs ``again`` (409 otherwise).
    """
    orders = Order.objects.filter(consumer=consumer)
    request = {
        "offer": offer_id,
        "plan": plan_id,
        "purpose": purpose,
        "purpose_category": purpose_category,
        "accept_terms": bool(accept_terms),
        **({"again": True} if again else {}),
    }
    request_hash, existing = idempotency.lookup(orders, key=idempotency_key, request=request)
    if existing is not None:
        return existing, False
    if not consumer.is_consumer:
        raise Forbidden("only consumer organisations can buy usage rights")
    offer = Offer.objects.select_related("dataset").filter(id=offer_id).first()
    if offer is None or offer.status != Offer.Status.PUBLISHED:
        raise missing("offer", "No such listed offer.")
    plans = list(offer.plans.all())
    plan = next((p for p in plans if p.id == plan_id), None) if plan_id else (plans[0] if len(plans) == 1 else None)
    if plan is None and plan_id:
        raise missing("plan", "The offer has no such price plan.")
    if plan is None:
        raise invalid("plan", "Choose one of the offer's price plans.")
    held = UsageRight.objects.filter(
        consumer=consumer, dataset_id=offer.dataset_id, status=UsageRight.Status.ACTIVE
    ).values_list("id", flat=True)
    if held and not again:
        winner = idempotency.race_winner(orders, key=idempotency_key, request_hash=request_hash)
        if winner is not None:  # this very request, committed meanwhile by a concurrent retry
            return winner, False
        ids = ", ".join(f"#{i}" for i in held)
        raise Conflict(
            f"you already hold an active right on this dataset ({ids}); confirm to buy another",
            fields={"again": [f"You already hold right {ids} on this dataset. Set again to buy another."]},
            code="already_held",
        )
    errors: dict[str, list[str]] = {}
    if offer.dataset.organization_id == consumer.id:
        errors["offer"] = ["You cannot buy a right on your own dataset."]
    if not purpose or not purpose.strip():
        errors["purpose"] = ["Declare the purpose of use."]
    if offer.allowed_purposes and purpose_category not in offer.allowed_purposes:
        errors["purpose_category"] = [f"This offer allows only: {', '.join(offer.allowed_purposes)}."]
    if not accept_terms:
        errors["accept_terms"] = ["You must accept the terms."]
    if errors:
        raise Invalid("order refused", fields=errors)
    snapshot = billing.Plan(**plan.snapshot())  # type: ignore[arg-type]
    upfront = billing.upfront_charge(snapshot, quota=offer.quota_jobs)
    try:
        with transaction.atomic():
            order = Order.objects.create(
                consumer=consumer,
                buyer=buyer,
                offer=offer,
                plan=plan,
                purpose=purpose.strip(),
                purpose_category=purpose_category,
                accepted_terms=offer.terms,
                plan_kind=plan.kind,
                unit_price_minor=plan.amount_minor,
                currency=plan.currency,
                plan_snapshot=snapshot.as_dict(),
                upfront_minor=upfront,
                quota_jobs=offer.quota_jobs,
                duration_days=offer.duration_days,
                operations=offer.operations,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
            right = UsageRight.objects.create(
                order=order,
                consumer=consumer,
                dataset=offer.dataset,
                operations=offer.operations,
                quota_total=offer.quota_jobs,
                min_group_size=offer.min_group_size,
                row_count=offer.dataset.row_count,
                epsilon_total=offer.epsilon,
                dp_required=offer.dp_required,
                expires_at=timezone.now() + timedelta(days=offer.duration_days),
            )
            entry_append(
                kind="right_granted",
                event_id=f"right_granted:{right.id}",
                payload={
                    "right": right.id,
                    "order": order.id,
                    "consumer": consumer.id,
                    "provider": offer.dataset.organization_id,
                    "dataset": offer.dataset_id,
                    "offer": offer.id,
                    "offer_version": offer.version,
                    "operations": right.operations,
                    "quota": right.quota_total,
                    "epsilon": str(right.epsilon_total),
                    "dp_required": right.dp_required,
                    "valid_from": right.created_at.isoformat(),
                    "expires_at": right.expires_at.isoformat(),
                    "purpose": order.purpose,
                    "purpose_category": purpose_category,
                    "price": snapshot.as_dict(),
                    "charge_minor": upfront,
                },
                dataset_id=offer.dataset_id,
                consumer_id=consumer.id,
                provider_id=offer.dataset.organization_id,
                right_id=right.id,
            )
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its order.
        winner = idempotency.race_winner(orders, key=idempotency_key, request_hash=request_hash)
        if winner is None:
            raise
        return winner, False
    return order, True
