"""Job coordination on the hub: submit, start, receive node messages, finish.

The hub advances a job only when a node message arrives (no task waits for a party).
Every message is persisted with its digest before it is acted on; a redelivered or
replayed message hits the unique digest/nonce and changes nothing.
Lock order: usage rights (ascending id) → job → node → ledger head.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.fields.json import KT
from django.utils import timezone

from compute import params as job_params
from compute.algorithms import REGISTRY, get_algorithm
from compute.algorithms.base import Column, DatasetInfo, JobView, ParamError, Party, Progress, Send
from compute.models import Job, JobParty, Message
from config import broker
from ledger import services as ledger
from ledger import writer as ledger_writer
from ledger.bulk import Json, insert_rows, update_rows
from ledger.exceptions import LedgerConflict, UsufructError
from ledger.hubkey import hub_kid, hub_private_key
from ledger.models import LedgerEntry
from marketplace import budget, idempotency
from marketplace import rights as right_svc
from marketplace import services as market
from marketplace.exceptions import Conflict, Forbidden, Invalid, NotFound, ServiceError, invalid, missing
from marketplace.models import Dataset, Node, Organization, UsageRight
from protocol import attest, envelope, keys, sealed
from protocol.canonical import canonical, sha256_hex

log = logging.getLogger(__name__)
NODE_TASK = "usufruct.node.run_step"


def _dataset_info(dataset: Dataset) -> DatasetInfo:
    return DatasetInfo(
        id=dataset.id,
        name=dataset.name,
        columns=tuple(
            Column(c["name"], c["type"], c["role"], tuple(c["bins"]) if c.get("bins") else None)
            for c in dataset.columns
        ),
    )


def job_submit(
    *,
    consumer: Organization,
    user: AbstractBaseUser,
    algorithm: str,
    params: dict[str, Any],
    rights: list[int],
    idempotency_key: str,
) -> tuple[Job, bool]:
    """Validate and queue a job; reserve one quota unit on each right atomically."""
    jobs = Job.objects.filter(consumer=consumer)
    shape = job_params.schema_errors(algorithm, params) if algorithm in REGISTRY else {}
    if shape:  # before the request is canonicalised: a parameter out of range is named as such
        raise Invalid("invalid parameters", fields=shape)
    request = {"algorithm": algorithm, "params": params, "rights": sorted(rights)}
    request_hash, existing = idempotency.lookup(jobs, key=idempotency_key, request=request)
    if existing is not None:
        return existing, False
    if not consumer.is_consumer:
        raise Forbidden("only consumer organisations submit jobs")
    try:
        algo = get_algorithm(algorithm)
    except ParamError as exc:
        raise Invalid(str(exc), fields=exc.errors) from None
    if not rights or len(set(rights)) != len(rights):
        raise invalid("rights", "Choose one or more distinct usage rights.")
    held = {
        r.id: r for r in UsageRight.objects.select_related("dataset__node").filter(id__in=rights, consumer=consumer)
    }
    unheld = [r for r in rights if r not in held]
    if unheld:
        raise missing("rights", f"You hold no usage right with id {', '.join(map(str, unheld))}.")
    datasets = [held[r].dataset for r in rights]
    if len({d.id for d in datasets}) != len(datasets):
        raise invalid("rights", "Each dataset may take part once.")
    try:
        clean = algo.validate(params, [_dataset_info(d) for d in datasets])
    except ParamError as exc:
        raise Invalid("invalid parameters", fields=exc.errors) from None
    if algorithm == "hetero_lr_score":
        _check_model(consumer, clean["model"], rights)
    if algorithm == "hetero_lr" and clean.get("alignment_job"):
        clean["aligned_rows"] = _check_alignment(consumer, clean, rights)
    epsilon = algo.privacy_epsilon(clean)
    props = algo.params_schema.get("properties", {})
    dp_field = next((f for f in ("dp_epsilon", "epsilon") if f in props), None)  # the algorithm's ε, if any
    demanding = [held[r].dataset.name for r in rights if held[r].dp_required]
    if demanding and not epsilon:
        names = ", ".join(sorted(demanding))
        field = dp_field or "algorithm"
        how = f"set {field}." if field != "algorithm" else f"{algorithm} makes no differentially private release."
        raise invalid(field, f"The offer on {names} requires differential privacy for every release: {how}")
    consumer_node = consumer.nodes.filter(status=Node.Status.ACTIVE).order_by("id").first()
    if consumer_node is None:
        raise invalid("node", "Your organisation needs an enrolled node to hold the job's keys.")
    try:
        with transaction.atomic():
            for right_id in sorted(rights):  # fixed lock order: ascending right id, then datasets
                right_svc.right_reserve(right_id=right_id, operation=algo.operation, consumer=consumer, epsilon=epsilon)
            if epsilon:  # the dataset's lifetime budget, shared by every buyer, at the same time
                datasets = [held[r].dataset_id for r in rights]
                budget.datasets_reserve(dataset_ids=datasets, epsilon=epsilon, field=dp_field)
            job = Job.objects.create(
                consumer=consumer,
                submitted_by=user,
                consumer_node=consumer_node,
                algorithm=algorithm,
                params=clean,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
            JobParty.objects.create(job=job, key="consumer", role="consumer", node=consumer_node)
            for right_id in rights:
                right = held[right_id]
                JobParty.objects.create(
                    job=job,
                    key=f"provider:{right.dataset_id}",
                    role="provider",
                    node=right.dataset.node,
                    dataset=right.dataset,
                    right=right,
                )
            transaction.on_commit(lambda: _enqueue_start(job.id))
    except IntegrityError:
        winner = idempotency.race_winner(jobs, key=idempotency_key, request_hash=request_hash)
        if winner is None:
            raise
        return winner, False
    return job, True


def _check_model(consumer: Organization, model_id: str, rights: list[int]) -> Job:
    """A model is the consumer's succeeded ``hetero_lr`` job; it scores under exactly the rights it was
    trained under, each still active (``right_reserve`` checks that), whatever the form sends."""
    model = Job.objects.filter(
        id=model_id, consumer=consumer, algorithm="hetero_lr", status=Job.Status.SUCCEEDED
    ).first()  # noqa: E501
    if model is None:
        raise missing("model", "Choose one of your trained models.")
    trained = set(model.parties.filter(role="provider").values_list("right_id", flat=True))
    if set(rights) != trained:
        raise invalid(
            "rights",
            f"This model scores under the rights it was trained under: {', '.join(map(str, sorted(trained)))}.",
        )  # noqa: E501
    return model


def _check_alignment(consumer: Organization, params: dict[str, Any], rights: list[int]) -> int:
    """An earlier alignment is the consumer's finished ``psi_align`` (or ``hetero_lr``) job over the
    same consumer dataset and ID column, under exactly these rights; returns its aligned row count.
    Each node checks again that it kept that alignment, for that dataset and right."""
    earlier = Job.objects.filter(
        id=params["alignment_job"], consumer=consumer, algorithm__in=["psi_align", "hetero_lr"],
        status=Job.Status.SUCCEEDED,
    ).first()  # fmt: skip
    if earlier is None:
        raise missing("alignment_job", "Choose one of your finished alignments (a psi_align or hetero_lr job).")
    same = all(earlier.params.get(k) == params[k] for k in ("consumer_dataset", "consumer_id_column"))
    if not same:
        raise invalid("alignment_job", "That job aligned another dataset or ID column of yours.")
    used = set(earlier.parties.filter(role="provider").values_list("right_id", flat=True))
    if used != set(rights):
        rights_text = ", ".join(map(str, sorted(r for r in used if r is not None)))
        raise invalid("alignment_job", f"That alignment was made under the rights {rights_text}; use the same.")
    outputs = earlier.outputs or {}
    psi = earlier.algorithm == "psi_align"
    count = outputs.get("aligned_records") if psi else outputs.get("rows", {}).get("aligned")
    if type(count) is not int or count < 2:
        raise invalid("alignment_job", "That job left no usable alignment.")
    return count


def models_of(consumer: Organization) -> list[dict[str, Any]]:
    """The consumer's trained models: each with its rights, their expiry and whether it can score now."""
    out = []
    trainings = Job.objects.filter(consumer=consumer, algorithm="hetero_lr", status=Job.Status.SUCCEEDED)
    for job in trainings.order_by("-finished_at").prefetch_related("parties__right__dataset", "parties__dataset"):
        rights = [p.right for p in job.parties.all() if p.role == "provider" and p.right is not None]
        usable = all(r.status == UsageRight.Status.ACTIVE and r.expires_at > timezone.now() for r in rights)
        out.append({"job": job, "rights": rights, "usable": usable})
    return out


PREVIEWS_PER_DATASET_PER_DAY = 3
PREVIEWS_PER_CONSUMER_PER_DAY = 20
PREVIEW_EPSILON = 1.0
# Averaging many noisy previews of one dataset would undo the noise, whatever the daily
# limit: each (consumer, dataset) pair has this much ε for previews over its lifetime.
PREVIEW_LIFETIME_EPSILON = 5.0


class Throttled(ServiceError):
    status = 429
    code = "throttled"


PREVIEW_KINDS = {"overlap": "psi", "value": "value_preview"}


def preview_request(
    *,
    consumer: Organization,
    user: AbstractBaseUser,
    dataset_id: int,
    consumer_dataset_id: int,
    idempotency_key: str,
    kind: str = "overlap",
) -> tuple[Job, bool]:
    """A free, rate-limited, differentially private look at a dataset before buying, run on the
    same compute path as paid jobs and recorded on the ledger as a free use:

    - ``overlap``: how many of the consumer's IDs the dataset holds (PSI cardinality + noise);
    - ``value``: per feature, information value and AUC against the consumer's label on the
      overlap (``value_preview``: labels encrypted and proved bits, bins noised).

    Both kinds share the limits per dataset and per consumer, and the lifetime ε per
    (consumer, dataset), and spend from the dataset's budget."""
    if kind not in PREVIEW_KINDS:
        raise invalid("kind", "A preview is 'overlap' or 'value'.")
    if not 0 < dataset_id < 2**53:  # no dataset has such an id (and the request could not be hashed exactly)
        raise missing("dataset", "No such listed dataset.")
    request = {"preview": dataset_id, "own": consumer_dataset_id}
    request_hash, existing = idempotency.lookup(
        Job.objects.filter(consumer=consumer),
        key=idempotency_key,
        request=request if kind == "overlap" else {**request, "kind": kind},
    )
    if existing is not None:
        return existing, False
    if not consumer.is_consumer:
        raise Forbidden("only consumer organisations ask for previews")
    target = (
        Dataset.objects.select_related("node", "organization")
        .filter(id=dataset_id, organization__is_provider=True)
        .first()
    )
    if target is None:
        raise missing("dataset", "No such listed dataset.")
    if target.organization_id == consumer.id:
        raise invalid("dataset", "This is your own dataset.")
    own = Dataset.objects.select_related("node").filter(id=consumer_dataset_id, organization=consumer).first()
    if own is None:
        raise missing("consumer_dataset", "Choose a dataset of yours, hosted on one of your enrolled nodes.")
    if own.node.status != Node.Status.ACTIVE:
        raise invalid("consumer_dataset", "Choose a dataset of yours, hosted on one of your enrolled nodes.")
    own_ids = [c["name"] for c in own.columns if c["role"] == "id"]
    if len(own_ids) != 1:
        raise invalid("consumer_dataset", "Your dataset needs exactly one ID column.")
    algorithm = PREVIEW_KINDS[kind]
    params: dict[str, Any] = {
        "consumer_dataset": own.local_name,
        "consumer_id_column": own_ids[0],
        "epsilon": PREVIEW_EPSILON,
    }
    if kind == "value":
        labels = [c["name"] for c in own.columns if c["role"] == "label"]
        if len(labels) != 1:
            raise invalid("consumer_dataset", "A value preview needs exactly one 0/1 label column in your dataset.")
        params["label_column"] = labels[0]
        params["key_bits"] = settings.USUFRUCT_PREVIEW_KEY_BITS
    try:
        clean = get_algorithm(algorithm).validate(params, [_dataset_info(target)])
    except ParamError as exc:
        raise Invalid("this dataset cannot be previewed", fields=exc.errors) from None
    try:
        with transaction.atomic():
            # The consumer's row serialises its previews, so parallel requests cannot all
            # pass the daily limit (averaging many noisy previews would undo the noise).
            Organization.objects.select_for_update().filter(id=consumer.id).values_list("id", flat=True).first()
            since = timezone.now() - timedelta(days=1)
            recent = Job.objects.filter(consumer=consumer, preview=True, created_at__gte=since)
            if recent.filter(parties__dataset=target).count() >= PREVIEWS_PER_DATASET_PER_DAY:
                raise Throttled(f"at most {PREVIEWS_PER_DATASET_PER_DAY} previews of one dataset a day")
            if recent.count() >= PREVIEWS_PER_CONSUMER_PER_DAY:
                raise Throttled(f"at most {PREVIEWS_PER_CONSUMER_PER_DAY} previews a day")
            spent = sum(
                float(p.get("epsilon", 0))
                for p in Job.objects.filter(consumer=consumer, preview=True, parties__dataset=target)
                .exclude(status__in=[Job.Status.FAILED, Job.Status.CANCELLED])  # no release, no ε spent
                .values_list("params", flat=True)
            )
            if spent + PREVIEW_EPSILON > PREVIEW_LIFETIME_EPSILON + 1e-9:
                raise Throttled(
                    f"your previews of this dataset have used their lifetime privacy budget"
                    f" (ε {PREVIEW_LIFETIME_EPSILON:g}); buy a right to learn more"
                )
            budget.datasets_reserve(dataset_ids=[target.id], epsilon=PREVIEW_EPSILON, field=None)  # every buyer's
            job = Job.objects.create(
                consumer=consumer,
                submitted_by=user,
                consumer_node=own.node,
                algorithm=algorithm,
                params=clean,
                preview=True,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
            JobParty.objects.create(job=job, key="consumer", role="consumer", node=own.node)
            JobParty.objects.create(
                job=job, key=f"provider:{target.id}", role="provider", node=target.node, dataset=target
            )
            transaction.on_commit(lambda: _enqueue_start(job.id))
    except IntegrityError:
        winner = idempotency.race_winner(
            Job.objects.filter(consumer=consumer), key=idempotency_key, request_hash=request_hash
        )
        if winner is None:
            raise
        return winner, False
    return job, True


def _preview_grant(job: Job, dataset: Dataset) -> dict[str, Any]:
    offers = dataset.offers.filter(status="published")
    return {
        "right": None,
        "preview": True,
        "node": dataset.node.slug,
        "dataset": dataset.id,
        "dataset_local": dataset.local_name,
        "consumer": job.consumer.slug,
        "operations": [job.algorithm],
        "expires_at": (job.created_at + timedelta(hours=1)).isoformat(),
        "min_group_size": max([o.min_group_size for o in offers] or [10]),
    }


def _enqueue_start(job_id: Any) -> None:
    from compute.tasks import start_job

    start_job.delay(str(job_id))


_PARTY_RELATED = ("node", "dataset", "right")
# What the hub never reads of a party's dataset while it runs a job (the catalogue's part).
_PARTY_DEFERRED = ("dataset__manifest", "dataset__columns", "dataset__description", "dataset__tags")


def _party_rows(parties: Any) -> Any:
    return parties.select_related(*_PARTY_RELATED).defer(*_PARTY_DEFERRED).order_by("id")


def _linked(party: JobParty, job: Job) -> JobParty:
    """One object for one row: a right's dataset is its party's, that dataset's node is the
    party's node, the right's consumer is the job's (not second copies from the database)."""
    if party.dataset is not None and party.dataset.node_id == party.node_id:
        party.dataset.node = party.node
    if party.right is not None:
        if party.right.dataset_id == party.dataset_id:
            party.right.dataset = party.dataset
        if party.right.consumer_id == job.consumer_id:
            party.right.consumer = job.consumer
    return party


def _parties(job: Job) -> list[JobParty]:
    """A job's parties with what the hub checks and tells about them, in one query."""
    return [_linked(p, job) for p in _party_rows(job.parties.all())]


def _view(job: Job, parties: list[JobParty]) -> JobView:
    views = []
    for p in parties:
        views.append(
            Party(
                key=p.key,
                node=p.node.slug,
                role=p.role,
                dataset_id=p.dataset_id,
                dataset_local=p.dataset.local_name if p.dataset else None,
                grant=right_svc.grant_for(p.right)
                if p.right
                else (_preview_grant(job, p.dataset) if job.preview and p.dataset else None),
                node_key=p.node.public_key,
            )
        )
    consumer_node = {
        "slug": job.consumer_node.slug,
        "kid": job.consumer_node.kid,
        "public_key": job.consumer_node.public_key,
    }
    for i, party in enumerate(views):
        if party.grant is not None:  # what a provider checks the consumer's signed statements against
            views[i] = dataclasses.replace(party, grant={**party.grant, "consumer_node": consumer_node})
    return JobView(id=str(job.id), params=job.params, parties=views, state=job.state)


@dataclasses.dataclass
class _Writes:
    """What one hub transaction writes, made in memory and flushed in a few statements: the
    messages in one insert, the jobs and their parties in one update each, and the outgoing
    steps published once the transaction commits."""

    messages: list[Message] = dataclasses.field(default_factory=list)
    jobs: dict[Any, Job] = dataclasses.field(default_factory=dict)
    parties: dict[int, JobParty] = dataclasses.field(default_factory=dict)
    sends: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    # Rights the transaction holds locked (with their dataset), settled in memory and saved here.
    rights: dict[int, UsageRight] = dataclasses.field(default_factory=dict)
    settled: set[int] = dataclasses.field(default_factory=set)
    refunds: dict[int, Decimal] = dataclasses.field(default_factory=dict)  # dataset → ε given back
    # Parties as they were read (status, usage, quota settled): one unchanged is not written again.
    read: dict[int, tuple[Any, ...]] = dataclasses.field(default_factory=dict)

    def touch(self, job: Job, parties: list[JobParty]) -> None:
        self.jobs[job.pk] = job
        self.parties.update((p.pk, p) for p in parties)

    def flush(self) -> None:
        if self.messages:
            now = timezone.now()
            insert_rows(Message, _MESSAGE_COLUMNS, [_message_row(m, now) for m in self.messages])
        if self.jobs:
            now = timezone.now()
            for job in self.jobs.values():
                job.updated_at = now
            update_rows(Job, list(self.jobs.values()), _JOB_FIELDS)
        changed = [p for p in self.parties.values() if self.read.get(p.pk) != _party_written(p)]
        update_rows(JobParty, changed, ["status", "usage", "quota_settled"])
        self.read.update((p.pk, _party_written(p)) for p in changed)
        update_rows(UsageRight, [self.rights[i] for i in sorted(self.settled)], right_svc.SETTLE_FIELDS)
        if self.refunds:  # datasets last (after rights, jobs and nodes), in ascending order
            budget.datasets_refund(self.refunds)
            self.refunds = {}
        if self.sends:
            transaction.on_commit(lambda sends=self.sends: _send_all(sends))
        self.messages, self.jobs, self.parties, self.sends, self.settled = [], {}, {}, [], set()


def _party_written(party: JobParty) -> tuple[Any, ...]:
    return party.status, [list(u) for u in party.usage], party.quota_settled  # a copy: compared by value


_JOB_FIELDS = ["status", "progress", "state", "outputs", "error", "finished_at", "updated_at"]
_MESSAGE_COLUMNS = [
    "job_id", "direction", "step", "round", "sender", "recipient", "nonce", "digest", "kid", "in_reply_to",
    "envelope", "body", "refused_code", "refused_reason", "created_at",
]  # fmt: skip


def _message_row(m: Message, now: Any) -> list[Any]:
    return [
        m.job_id, m.direction, m.step, m.round, m.sender, m.recipient, m.nonce, m.digest, m.kid, m.in_reply_to,
        Json(json.dumps(m.envelope)), Json(json.dumps(m.body)), m.refused_code, m.refused_reason, now,
    ]  # fmt: skip


def _steps(job: Job, view: JobView, sends: list[Send], parties: list[JobParty], writes: _Writes) -> None:
    """Seal and keep each outgoing step; they are published once the transaction commits."""
    node_keys = {p.node.slug: p.node.public_key for p in parties}
    for send in sends:
        party = view.party(send.party)
        body = {"algorithm": job.algorithm, "party": party.key, "args": send.body, "grant": party.grant}
        wire = envelope.seal(
            job=view.id,
            step=send.step,
            round=send.round,
            sender="hub",
            recipient=party.node,
            body=body,
            key=hub_private_key(),
            kid=hub_kid(),
            ttl=timedelta(seconds=settings.USUFRUCT_MESSAGE_TTL_SECONDS),
            to=keys.public_from_b64(node_keys[party.node]),  # sealed: neither the broker nor another party reads it
        )
        digest = sha256_hex(canonical(wire["payload"]))
        writes.messages.append(_message(job=job, wire=wire, body=body, direction=Message.Direction.OUT, digest=digest))
        writes.sends.append((party.node, wire))


def _apply(job: Job, view: JobView, progress: Progress, parties: list[JobParty], writes: _Writes) -> None:
    """Take the algorithm's new state and queue its outgoing steps (written by ``writes``)."""
    job.state = view.state
    job.progress = max(job.progress, progress.percent)
    writes.touch(job, parties)
    _steps(job, view, progress.sends, parties, writes)
    providers = sorted(
        (p for p in parties if p.role == "provider" and p.right_id is not None), key=lambda p: p.right_id
    )
    if progress.privacy_spent:  # one entry charges the right and the dataset (a free preview: the dataset)
        charged = providers or [p for p in parties if p.role == "provider" and job.preview and p.dataset_id]
        for party in charged:
            ledger_writer.entry_enqueue(
                kind="dp_charge",
                event_id=f"dp_charge:{job.id}:{party.right_id or f'dataset-{party.dataset_id}'}",
                payload={
                    "job": str(job.id),
                    "right": party.right_id,
                    "dataset": party.dataset_id,
                    "epsilon": str(progress.privacy_spent),
                    "algorithm": job.algorithm,
                },
                dataset_id=party.dataset_id,
                consumer_id=job.consumer_id,
                provider_id=(party.right.dataset if party.right else party.dataset).organization_id,
                right_id=party.right_id,
            )
    if progress.delivers or progress.outputs is not None:
        for party in providers:
            if not party.quota_settled:
                _settle(job, party, "suppressed" if party.key in progress.withheld else "delivered", writes)
    if progress.outputs is not None:
        for party in parties:
            if party.role == "consumer":
                party.status = JobParty.Status.DONE
        job.outputs = progress.outputs
        job.status = Job.Status.SUCCEEDED
        job.finished_at = timezone.now()


def _send(node_slug: str, wire: dict[str, Any]) -> None:
    _send_all([(node_slug, wire)])


def _send_all(sends: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish hub → node steps over one producer connection, in one round trip on Redis."""
    from config.celery import app

    with app.producer_or_acquire() as producer, broker.together(producer.channel) as buffered:
        for node_slug, wire in sends:
            p = wire["payload"]
            argsrepr = f"[{p['job']} {p['step']}#{p['round']}]"  # not a repr of the whole sealed wire
            if buffered:  # nothing here touches the wire: Celery's message, without send_task's wrappers
                broker.publish_task(app, producer, NODE_TASK, args=[wire], queue=f"node.{node_slug}", argsrepr=argsrepr)
            else:
                app.send_task(
                    NODE_TASK, args=[wire], queue=f"node.{node_slug}", producer=producer, argsrepr=argsrepr,
                    kwargsrepr="{}",
                )  # fmt: skip


def _message(
    *,
    job: Job | None,
    wire: dict[str, Any],
    body: dict[str, Any],
    direction: str,
    digest: str,
    in_reply_to: str | None = None,
) -> Message:
    """A message to keep: the sealed wire as it travelled and the body the hub wrote or opened."""
    p = wire["payload"]
    return Message(
        body=body,
        in_reply_to=in_reply_to,
        job=job,
        direction=direction,
        step=p["step"],
        round=p["round"],
        sender=p["sender"],
        recipient=p["recipient"],
        nonce=p["nonce"],
        digest=digest,
        kid=wire["kid"],
        envelope=wire,
    )


def job_start(*, job_id: str) -> None:
    with transaction.atomic():
        job = _lock_job(job_id)
        if job is None or job.status != Job.Status.QUEUED:
            return  # already started (a redelivered start task) or gone
        parties = _parties(job)
        view = _view(job, parties)
        progress = get_algorithm(job.algorithm).start(view)
        job.status = Job.Status.RUNNING
        writes = _Writes()
        _apply(job, view, progress, parties, writes)
        writes.flush()


def _fail(
    job: Job,
    reason: str,
    status: str = Job.Status.FAILED,
    parties: list[JobParty] | None = None,
    writes: _Writes | None = None,
    refunds: dict[int, Decimal] | None = None,
) -> None:
    """End a job without a result and give back every quota unit not yet consumed.

    ``parties``: the job's parties as the caller holds them (their usage may not be written
    yet); ``writes``: the caller's batch, which then writes the parties and the rights and gives
    back the datasets' ε (as ``refunds``, for a caller that ends several jobs: ascending datasets).
    """
    job.status = status
    job.error = reason
    job.finished_at = timezone.now()
    job.save()
    outcome = "cancelled" if status == Job.Status.CANCELLED else "failed"
    providers = [p for p in (_parties(job) if parties is None else parties) if p.role == "provider" and p.right_id]
    for party in sorted(providers, key=lambda p: p.right_id):
        if not party.quota_settled:
            _settle(job, party, outcome, writes)
    eps = get_algorithm(job.algorithm).privacy_epsilon(job.params)
    if eps and not job.state.get("dp_released"):
        if not job.preview:
            for party in providers:
                right_svc.right_refund_epsilon(right_id=party.right_id, epsilon=eps)
        every = [p.dataset_id for p in (_parties(job) if parties is None else parties) if p.role == "provider"]
        pending = writes.refunds if writes is not None else refunds if refunds is not None else {}
        budget.refund_into(pending, [d for d in every if d], eps)
        if writes is None and refunds is None:
            budget.datasets_refund(pending)


def rights_of_open_jobs(*, right_id: int) -> list[int]:
    """Every right used by the open jobs that use ``right_id`` (for lock ordering)."""
    open_jobs = JobParty.objects.filter(
        right_id=right_id, job__status__in=[Job.Status.QUEUED, Job.Status.RUNNING]
    ).values_list("job_id", flat=True)
    ids = JobParty.objects.filter(job_id__in=open_jobs, right__isnull=False).values_list("right_id", flat=True)
    return sorted({right_id, *ids})


def jobs_cancel_for_right(*, right_id: int, reason: str) -> list[str]:
    """Cancel the queued and running jobs that use a right.

    The caller holds the locks of every right in ``rights_of_open_jobs`` (ascending).
    """
    cancelled: list[str] = []
    refunds: dict[int, Decimal] = {}
    ids = JobParty.objects.filter(right_id=right_id).values_list("job_id", flat=True)
    for job in Job.objects.select_for_update().filter(id__in=ids, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]):
        _fail(job, reason, status=Job.Status.CANCELLED, refunds=refunds)
        cancelled.append(str(job.id))
    budget.datasets_refund(refunds)  # after every job: the datasets in ascending order
    return cancelled


def job_cancel(*, consumer: Organization, job_id: Any) -> Job:
    """The consumer stops its own job: replies that arrive later are ignored, and nothing is
    charged (each right's settlement says ``cancelled``, its quota unit is given back).

    A job that has already delivered its output (settled ``delivered``) keeps its charge; a
    finished job cannot be cancelled. Repeating a cancel is harmless.
    """
    with transaction.atomic():
        job = _lock_job(job_id)
        if job is None or job.consumer_id != consumer.id:
            raise NotFound("no such job")
        if job.status == Job.Status.CANCELLED:
            return job
        if job.status not in (Job.Status.QUEUED, Job.Status.RUNNING):
            raise Conflict(f"the job has already {job.status}")
        _fail(job, "cancelled by the consumer", status=Job.Status.CANCELLED)
        return job


def jobs_fail_stale(*, older_than: timedelta) -> int:
    """Beat task body: a job with no progress for ``older_than`` fails and frees its quota
    (a node that is down must not hold a consumer's units forever)."""
    cutoff = timezone.now() - older_than
    count = 0
    for job_id in Job.objects.filter(
        status__in=[Job.Status.QUEUED, Job.Status.RUNNING], updated_at__lt=cutoff
    ).values_list("id", flat=True):
        with transaction.atomic():
            job = _lock_job(job_id)  # rights first, then the job (the documented lock order)
            if job is not None and job.status in (Job.Status.QUEUED, Job.Status.RUNNING) and job.updated_at < cutoff:
                if job.status == Job.Status.RUNNING and _stalled_goes_on(job):
                    continue
                waiting = ", ".join(p.node.slug for p in job.parties.filter(status=JobParty.Status.WAITING))
                _fail(job, f"timed out waiting for {waiting or 'the hub'}")
                count += 1
    return count


def _stalled_goes_on(job: Job) -> bool:
    """An algorithm that can go on without the parties that went silent (``on_stalled``: e.g.
    ``homo_lr`` drops them from the round) does so; True if the job moved on."""
    algo = get_algorithm(job.algorithm)
    if not hasattr(algo, "on_stalled"):
        return False
    parties = _parties(job)
    view = _view(job, parties)
    try:
        progress = algo.on_stalled(view)
    except (KeyError, ValueError, TypeError) as exc:
        _fail(job, f"timed out: {exc}", parties=parties)
        return True
    if progress is None:
        return False
    asked = {s.party for s in progress.sends}
    for p in parties:  # the silent ones, dropped from the round
        if p.role == "provider" and p.key in view.state.get("dropped", {}):
            p.status = JobParty.Status.REFUSED
    writes = _Writes()
    _apply(job, view, progress, parties, writes)
    writes.flush()
    log.info("job %s went on without its silent parties (next: %s)", job.id, ", ".join(sorted(asked)) or "none")
    return True


def messages_resend_unanswered(*, older_than: timedelta) -> int:
    """Beat task body: publish again the hub's steps that no node has answered yet.

    Covers a publish lost between the commit and the broker (the outbox is the message
    table). Safe to repeat: a node that already saw the nonce ignores the step, and the
    hub accepts one answer per step. Expired steps are left to the stale-job sweeper.
    A finished model's ``lr_retire`` steps are sent again too: a host must delete its part
    even if the first request was lost.
    """
    cutoff = timezone.now() - older_than
    answered = Message.objects.filter(direction=Message.Direction.IN, in_reply_to__isnull=False).values("in_reply_to")
    pending = (
        Message.objects.filter(direction=Message.Direction.OUT, created_at__lt=cutoff)
        .filter(Q(job__status=Job.Status.RUNNING) | Q(step__in=RETIREMENT_STEPS))
        .exclude(digest__in=answered)
    )
    count = 0
    expired = []
    for m in pending:
        if envelope.parse_time(m.envelope["payload"]["expires_at"]) > timezone.now():
            _send(m.recipient, m.envelope)
            count += 1
        elif m.step in RETIREMENT_STEPS:
            expired.append(m)
    # A node that failed a retirement (a node error, e.g. its disk) is asked again, as if unanswered.
    failed = Message.objects.filter(
        direction=Message.Direction.OUT,
        step__in=RETIREMENT_STEPS,
        created_at__lt=cutoff,
        digest__in=Message.objects.filter(direction=Message.Direction.IN, body__status="error").values("in_reply_to"),
    )
    return count + _retire_again([*expired, *failed])


RETIREMENT_STEPS = ("lr_retire", "psi_forget")  # asked until answered, however long a node is away


def _retire_again(expired: list[Message]) -> int:
    """A retirement step (:data:`RETIREMENT_STEPS`) that expired unanswered is asked again as a fresh
    step (a new nonce and expiry), unless a later one to the same node for the same job exists: a
    node must delete what an ended right covered however long it was away. Deleting is idempotent
    on the node; a model's ledger entry is written once."""
    count = 0
    for m in expired:
        asked = Message.objects.filter(
            job_id=m.job_id, step=m.step, direction=Message.Direction.OUT, recipient=m.recipient
        ).values_list("id", flat=True)
        if any(i > m.id for i in asked):
            continue
        with transaction.atomic():
            job = Job.objects.select_for_update().get(id=m.job_id)
            parties = _parties(job)
            if len(asked) >= settings.USUFRUCT_RETIREMENT_ATTEMPTS:
                # The node stayed away through every request: on the ledger as not deleted, once.
                party = next(p for p in parties if p.key == m.body["party"])
                node = Node.objects.get(slug=m.recipient)
                reason = f"no answer to {len(asked)} requests"
                _retirement_refused(job=job, party=party, node=node, step=m.step, code="unanswered", reason=reason)
                continue
            writes = _Writes()
            _steps(job, _view(job, parties), [Send(m.body["party"], m.step, m.body["args"])], parties, writes)
            writes.flush()
        count += 1
    return count


def message_receive(*, wire: dict[str, Any]) -> str:
    """One node → hub message (see :func:`messages_receive`); a refusal is raised."""
    (outcome,) = messages_receive(wires=[wire])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


NODE_STEPS = frozenset({"enrol", "announce", "attest"})


def messages_receive(*, wires: list[Any]) -> list[str | Exception]:
    """Entry point for every node → hub message, many at a time (the hub task takes them off the
    broker in batches). Returns, for each wire in order, what happened or the error that refused it.

    A node's own messages (enrolment, announcements, attestations) are taken one at a time.
    Job replies are opened and verified first, then checked and applied together in one
    transaction, each check one query over the batch (:func:`_replies_receive`). A reply that
    fails a check is refused alone; if the batch itself fails, each reply is taken again alone.
    """
    results: list[str | Exception] = ["" for _ in wires]
    job_replies = []
    for i, wire in enumerate(wires):
        payload = wire.get("payload") if isinstance(wire, dict) else None
        if (payload.get("step") if isinstance(payload, dict) else None) in NODE_STEPS:
            results[i] = _guarded(lambda w=wire: _node_message(w), alone=len(wires) == 1)
        else:
            job_replies.append(i)
    if not job_replies:
        return results
    active = {n.kid: n for n in Node.objects.filter(kid__in=_kids(wires, job_replies), status=Node.Status.ACTIVE)}
    opened: list[tuple[int, dict[str, Any], envelope.Opened, Node]] = []
    for i in job_replies:
        try:
            o = _open(
                wires[i], resolve=lambda kid: keys.public_from_b64(active[kid].public_key) if kid in active else None
            )
            node = active[o.kid]
            if node.slug != o.payload["sender"]:
                raise envelope.EnvelopeError("impersonation", "sender does not own the signing key")
            _job_id(o)
            opened.append((i, wires[i], o, node))
        except envelope.EnvelopeError as exc:
            results[i] = exc
    if not opened:
        return results
    Node.objects.filter(id__in={node.id for *_, node in opened}).update(last_seen_at=timezone.now())
    receipts = _receipts_verified(opened, active)
    try:
        _replies_receive(opened, results, active, receipts)
    except Exception as exc:
        if len(opened) == 1:
            if not isinstance(exc, UsufructError):
                raise
            results[opened[0][0]] = exc
            return results
        log.warning("a batch of %d node replies failed (%s): taking each alone", len(opened), exc)
        for one in opened:
            try:
                _replies_receive([one], results, active, receipts)
            except Exception as alone:  # this reply alone is refused; the others go on
                if not isinstance(alone, UsufructError):
                    log.exception("a node reply failed")
                results[one[0]] = alone
    return results


def _receipts_verified(
    opened: list[tuple[int, dict[str, Any], envelope.Opened, Node]], active: dict[str, Node]
) -> dict[str, envelope.Opened]:
    """The usage receipts whose signature verifies under an active node's key, by the digest of
    the reply that carries them: checked before the batch's transaction takes its locks (a
    right's lock is shared by every job under it). Inside, the same key answers for the same
    kid (``_Intake.node_key``), so a receipt found here is not verified again; one missing
    is verified there, and refused there with its reason."""
    verified = {}
    for _, _, o, _ in opened:
        receipt = o.payload["body"].get("receipt")
        kid = receipt.get("kid") if isinstance(receipt, dict) else None
        if not isinstance(kid, str) or kid not in active:
            continue
        try:
            verified[o.digest] = envelope.verify_signed(receipt, lambda k: _key_of(active.get(k)))
        except Exception:  # noqa: S112 — whatever a node sent: the check inside refuses it with its reason
            continue
    return verified


def _key_of(node: Node | None) -> Any:
    return keys.public_from_b64(node.public_key) if node else None


def _guarded(call: Any, *, alone: bool) -> str | Exception:
    """A refusal (a bad envelope, a failed service check) is the message's outcome, not the batch's;
    so is an unexpected error, logged, unless the message came alone (then it is raised, as before)."""
    try:
        return str(call())
    except (envelope.EnvelopeError, UsufructError) as exc:
        return exc
    except Exception as exc:
        if alone:
            raise
        log.exception("a node message failed")
        return exc


def _kids(wires: list[Any], indices: list[int]) -> list[str]:
    return [w["kid"] for w in (wires[i] for i in indices) if isinstance(w, dict) and isinstance(w.get("kid"), str)]


def _job_id(opened: envelope.Opened) -> str:
    """The job a reply names, as a UUID's text; any other value names no job."""
    try:
        return str(uuid.UUID(str(opened.payload["job"])))
    except (ValueError, TypeError):
        raise envelope.EnvelopeError("unknown_job", f"no job {opened.payload['job']}") from None


def _node_message(wire: dict[str, Any]) -> str:
    """A node's own message: its enrolment, a dataset announcement or a receipt attestation."""
    step = wire["payload"]["step"]
    if step == "enrol":
        opened = _open(wire, resolve=lambda kid: _presented_key(wire, kid))
        market.node_enrol(opened=opened)
        return "enrolled"
    opened = _open(wire, resolve=market.node_public_key)
    node = Node.objects.get(kid=opened.kid)
    if node.slug != opened.payload["sender"]:
        raise envelope.EnvelopeError("impersonation", "sender does not own the signing key")
    Node.objects.filter(id=node.id).update(last_seen_at=timezone.now())
    if step == "announce":
        market.dataset_register(node=node, opened=opened)
        return "announced"
    return _attestation_receive(node=node, opened=opened)


def attestations_request(*, limit: int = attest.MAX_RECEIPTS) -> int:
    """Beat task body: ask each node to attest, in one signature, its receipts not yet in a batch.

    Stateless and safe to repeat: the node's answer is checked against the ledger
    when it comes back, and a batch the ledger already holds is not appended twice.
    """
    sent = 0
    for node in Node.objects.filter(status=Node.Status.ACTIVE).exclude(kid="").order_by("slug"):
        batch = ledger.receipt_batch_pending(node_slug=node.slug, organization_id=node.organization_id, limit=limit)
        if batch is None:
            continue
        wire = envelope.seal(
            job="",
            step="attest",
            round=0,
            sender="hub",
            recipient=node.slug,
            body={
                "log": settings.USUFRUCT_LOG_ORIGIN,
                "first_seq": batch.first_seq,
                "last_seq": batch.last_seq,
                "receipts": batch.digests,
            },
            key=hub_private_key(),
            kid=hub_kid(),
            to=keys.public_from_b64(node.public_key),
        )
        _send(node.slug, wire)
        sent += 1
    return sent


def _attestation_receive(*, node: Node, opened: envelope.Opened) -> str:
    body = opened.payload["body"]
    if body.get("status") != "ok":
        log.warning("node %s refused to attest receipts: %s (%s)", node.slug, body.get("reason"), body.get("code"))
        unknown = body.get("unknown")
        if body.get("code") != "unknown_receipts":
            return "attestation refused"
        if not isinstance(unknown, list) or not all(isinstance(d, str) for d in unknown):
            raise envelope.EnvelopeError("malformed", "a refusal lists the unknown receipts' digests")
        seqs = ledger.receipt_refusal_record(
            node_slug=node.slug,
            organization_id=node.organization_id,
            unknown=unknown,
            reason=str(body.get("reason", ""))[:200],
        )
        log.warning("node %s does not know the receipts of entries %s: left out of its batches", node.slug, seqs)
        return f"attestation refused: {len(seqs)} receipt(s) unknown to the node"
    signed = envelope.verify_signed(
        body.get("attestation"), lambda kid: market.node_public_key(kid) if kid == node.kid else None
    )
    try:
        entry = ledger.receipt_batch_record(
            node_slug=node.slug, organization_id=node.organization_id, attestation=body["attestation"]
        )
    except (KeyError, TypeError, ValueError, LedgerConflict) as exc:
        raise envelope.EnvelopeError("attestation_rejected", str(exc)) from None
    return f"attested #{signed.payload['first_seq']}..#{signed.payload['last_seq']} in entry #{entry.seq}"


def _presented_key(wire: dict[str, Any], kid: str) -> Any:
    """The key an enrolment presents (inside its sealed body), if it is the one that signed it."""
    try:
        body = sealed.open_body(wire["payload"]["body"], hub_private_key())
        public = keys.public_from_b64(body["public_key"])
    except (KeyError, TypeError, ValueError):
        return None
    return public if keys.key_id(public) == kid else None


def _open(wire: dict[str, Any], resolve: Any) -> envelope.Opened:
    return envelope.open_envelope(wire, resolve_key=resolve, recipient="hub", unseal=hub_private_key())


def _lock_job(job_id: Any) -> Job | None:
    """Lock a job the documented way: its rights (ascending id) first, then the job row."""
    right_ids = sorted(
        JobParty.objects.filter(job_id=job_id, right__isnull=False).values_list("right_id", flat=True).distinct()
    )
    list(UsageRight.objects.select_for_update().filter(id__in=right_ids).order_by("id").values_list("id", flat=True))
    return Job.objects.select_for_update().filter(id=job_id).first()


class ReceiptRejected(envelope.EnvelopeError):
    """A provider's usage receipt that fails one of the hub's checks: the reply is refused."""


RECEIPT_FIELDS = frozenset(
    {
        "consumer_kid",
        "type",
        "job",
        "step",
        "round",
        "node",
        "dataset",
        "right",
        "consumer",
        "operation",
        "rows",
        "records",
        "request",
        "at",
    }
)
# A node's clock may run a little behind or ahead of the hub's.
CLOCK_SKEW = timedelta(seconds=60)


@dataclasses.dataclass
class _Intake:
    """What the hub knows about one batch of job replies, read in one query per kind of fact,
    under the locks of the jobs' rights (ascending), the jobs (ascending) and the senders' nodes."""

    jobs: dict[str, Job]
    parties: dict[str, list[JobParty]]
    nodes: dict[int, Node]
    asked: dict[str, Message]
    digests: set[str]  # messages the hub holds (or takes in this batch)
    nonces: set[tuple[str, str]]  # (sender, nonce)
    answered: set[str]  # steps answered
    active: dict[str, Node]
    writes: _Writes = dataclasses.field(default_factory=_Writes)
    receipts: dict[str, envelope.Opened] = dataclasses.field(default_factory=dict)  # verified, by reply digest

    @classmethod
    def load(cls, opened: list[tuple[int, dict[str, Any], envelope.Opened, Node]], active: dict[str, Node]) -> _Intake:
        job_ids = sorted({_job_id(o) for _, _, o, _ in opened})
        right_ids = sorted(
            set(JobParty.objects.filter(job_id__in=job_ids, right__isnull=False).values_list("right_id", flat=True))
        )
        held = {r.id: r for r in UsageRight.objects.select_for_update().filter(id__in=right_ids).order_by("id")}
        jobs = {str(j.id): j for j in Job.objects.select_for_update().filter(id__in=job_ids).order_by("id")}
        rows = list(JobParty.objects.filter(job_id__in=list(jobs)).order_by("id"))
        node_ids = sorted({node.id for *_, node in opened})
        nodes = {n.id: n for n in Node.objects.select_for_update().filter(id__in=node_ids).order_by("id")}
        _share_related(jobs, rows, held, nodes)
        parties: dict[str, list[JobParty]] = {job_id: [] for job_id in jobs}
        for p in rows:
            parties[str(p.job_id)].append(p)
        bodies = [o.payload["body"] for _, _, o, _ in opened]
        asks = [b["in_reply_to"] for b in bodies if isinstance(b.get("in_reply_to"), str)]
        nonce_pairs = {(o.payload["sender"], o.payload["nonce"]) for _, _, o, _ in opened}
        used = Message.objects.filter(nonce__in=[n for _, n in nonce_pairs]).values_list("sender", "nonce")
        return cls(
            jobs=jobs,
            parties=parties,
            nodes=nodes,
            asked={
                m.digest: m
                for m in Message.objects.filter(direction=Message.Direction.OUT, digest__in=asks)
                .only("id", "job_id", "recipient", "step", "round", "nonce", "digest")
                .annotate(  # the step's window, not the whole sealed envelope
                    issued_at=KT("envelope__payload__issued_at"), expires_at=KT("envelope__payload__expires_at")
                )
            },
            digests=set(
                Message.objects.filter(digest__in=[o.digest for _, _, o, _ in opened]).values_list("digest", flat=True)
            ),
            nonces={pair for pair in used if pair in nonce_pairs},
            answered=set(Message.objects.filter(in_reply_to__in=asks).values_list("in_reply_to", flat=True)),
            active=active,
            writes=_Writes(rights=held, read={p.pk: _party_written(p) for p in rows}),
        )

    def keep(self, message: Message) -> None:
        self.writes.messages.append(message)
        self.digests.add(message.digest)
        self.nonces.add((message.sender, message.nonce))
        if message.in_reply_to:
            self.answered.add(message.in_reply_to)

    def node_key(self, kid: str) -> Any:
        return _key_of(self.active[kid]) if kid in self.active else market.node_public_key(kid)


def _share_related(
    jobs: dict[str, Job], parties: list[JobParty], rights: dict[int, UsageRight], locked: dict[int, Node]
) -> None:
    """One object per row for what a batch's jobs and parties point to (their consumers, nodes,
    datasets and rights), each read once for the batch: every job under the same right and
    between the same nodes shares them, so a batch of a hundred replies builds a few of these
    instead of six per reply, as ``select_related`` would. A sender's node is its locked row;
    a right is the row the batch holds locked."""
    node_ids = {j.consumer_node_id for j in jobs.values()} | {p.node_id for p in parties}
    nodes = {n.id: n for n in Node.objects.filter(id__in=sorted(node_ids - set(locked)))} | locked
    datasets = {
        d.id: d
        for d in Dataset.objects.defer(*(f.removeprefix("dataset__") for f in _PARTY_DEFERRED)).filter(
            id__in=sorted({p.dataset_id for p in parties if p.dataset_id} | {r.dataset_id for r in rights.values()})
        )
    }
    orgs = {o.id: o for o in Organization.objects.filter(id__in=sorted({j.consumer_id for j in jobs.values()}))}
    cache = _cache_related
    for d in datasets.values():
        if d.node_id in nodes:
            cache(d, "node", nodes[d.node_id])
    for r in rights.values():
        cache(r, "dataset", datasets[r.dataset_id])
        if r.consumer_id in orgs:
            cache(r, "consumer", orgs[r.consumer_id])
    for j in jobs.values():
        cache(j, "consumer", orgs[j.consumer_id])
        cache(j, "consumer_node", nodes[j.consumer_node_id])
    for p in parties:
        cache(p, "job", jobs[str(p.job_id)])
        cache(p, "node", nodes[p.node_id])
        cache(p, "dataset", datasets[p.dataset_id] if p.dataset_id else None)
        cache(p, "right", rights[p.right_id] if p.right_id else None)


def _cache_related(obj: Any, name: str, value: Any) -> None:
    """Point ``obj``'s foreign key ``name`` at ``value`` (a row already read), as ``select_related`` does."""
    obj._meta.get_field(name).set_cached_value(obj, value)


def _replies_receive(
    opened: list[tuple[int, dict[str, Any], envelope.Opened, Node]],
    results: list[str | Exception],
    active: dict[str, Node],
    receipts: dict[str, envelope.Opened],
) -> None:
    """Check and apply verified job replies in one transaction; each outcome goes into ``results``
    (``receipts``: those :func:`_receipts_verified` already verified)."""
    with transaction.atomic(), ledger_writer.entries_collected():
        intake = _Intake.load(opened, active)
        intake.receipts = receipts
        for i, wire, o, node in opened:
            try:
                results[i] = _reply(intake, node=node, wire=wire, opened=o)
            except envelope.EnvelopeError as exc:
                results[i] = exc
        intake.writes.flush()


def _reply(intake: _Intake, *, node: Node, wire: dict[str, Any], opened: envelope.Opened) -> str:
    """One verified job reply, held to what the hub asked and knows, then applied."""
    payload = opened.payload
    body = payload["body"]
    job = intake.jobs.get(_job_id(opened))
    if job is None:
        raise envelope.EnvelopeError("unknown_job", f"no job {payload['job']}")
    if opened.digest in intake.digests or (node.slug, payload["nonce"]) in intake.nonces:
        return "duplicate"
    parties = intake.parties[str(job.id)]
    party = next((p for p in parties if p.key == body.get("party")), None)
    if party is None or party.node_id != node.id:
        raise envelope.EnvelopeError("impersonation", "the sender is not this party's node")

    def said(outcome: str) -> str:  # the console names the job, step and party a hub worker handled
        log.info(
            "hub: job %s step %s from %s (node %s): %s", str(job.id)[:8], payload["step"], party.key, node.slug, outcome
        )
        return outcome

    # The node row, locked after the jobs (rights → jobs → nodes → ledger head, as enrolment
    # takes node → ledger): a key rotation cannot slip in between the receipt's check and
    # its entry, and the key the reply was opened with must still be the node's.
    node = intake.nodes[node.id]
    if node.kid != opened.kid:
        raise envelope.EnvelopeError("unknown_key", "the node's key changed while its reply was in flight")
    asked = intake.asked.get(body.get("in_reply_to") or "")
    if asked is None or (asked.job_id, asked.recipient, asked.step, asked.round) != (
        job.id,
        node.slug,
        payload["step"],
        payload["round"],
    ):
        raise envelope.EnvelopeError("unsolicited", "this reply answers no step the hub sent to this node")
    if body["in_reply_to"] in intake.answered:
        raise envelope.EnvelopeError("answered", "this step was already answered")
    message = _message(
        job=job,
        wire=wire,
        body=body,
        direction=Message.Direction.IN,
        digest=opened.digest,
        in_reply_to=body["in_reply_to"],
    )
    intake.keep(message)
    writes = intake.writes
    if payload["step"] == "lr_retire" and party.role == "provider":
        return said(_model_retired(job=job, party=party, node=node, body=body, message=message))
    if payload["step"] == "psi_forget":  # the signed answer is kept (the message) as the node's word
        return said(_alignment_forgotten(job=job, party=party, node=node, body=body, message=message))
    if job.status != Job.Status.RUNNING:
        return said("ignored")
    writes.touch(job, parties)
    if body.get("status") != "ok":
        party.status = JobParty.Status.REFUSED
        reason = f"{node.slug} refused step {payload['step']}: {body.get('reason', '')} ({body.get('code')})"
        algo = get_algorithm(job.algorithm)
        if hasattr(algo, "on_refused"):  # an algorithm that goes on without the party (a dropout)
            view = _view(job, parties)
            try:
                progress = algo.on_refused(view, payload["step"], party.key, reason)
            except (KeyError, ValueError, TypeError) as exc:
                _fail(job, f"{reason}; {exc}" if str(exc) != reason else reason, parties=parties, writes=writes)
                return said("refused")
            _apply(job, view, progress, parties, writes)
            return said("dropped")
        _fail(job, reason, parties=parties, writes=writes)
        return said("refused")
    if party.role == "provider":
        try:
            receipt, passes = _check_receipt(
                job=job, party=party, node=node, receipt_wire=body.get("receipt"), asked=asked, resolve=intake.node_key,
                verified=intake.receipts.get(opened.digest),
            )  # fmt: skip
            _record_usage(
                job=job, party=party, asked=asked, receipt_wire=body["receipt"], receipt=receipt, passes=passes
            )
        except ReceiptRejected as exc:
            # The claim is kept as evidence, the step fails, and nothing is charged.
            message.refused_code, message.refused_reason = exc.code, str(exc)[:1000]
            party.status = JobParty.Status.REFUSED
            reason = f"the hub refused {node.slug}'s receipt for step {payload['step']}: {exc} ({exc.code})"
            _fail(job, reason, parties=parties, writes=writes)
            return said(f"receipt refused: {exc.code}")
    view = _view(job, parties)
    try:
        progress = get_algorithm(job.algorithm).on_result(view, payload["step"], party.key, body["result"])
    except (KeyError, ValueError, TypeError) as exc:
        _fail(job, f"bad result from {node.slug} at step {payload['step']}: {exc}", parties=parties, writes=writes)
        return said("failed")
    _apply(job, view, progress, parties, writes)
    return said("advanced")


def _whole(value: Any) -> bool:
    return type(value) is int


def _check_receipt(
    *,
    job: Job,
    party: JobParty,
    node: Node,
    receipt_wire: Any,
    asked: Message,
    resolve: Any,
    verified: envelope.Opened | None = None,
) -> tuple[envelope.Opened, int]:
    """Hold every field of a node's usage receipt to what the hub asked and what it knows.

    The receipt is the node's claim; each check names the field it refuses. Bounds on
    ``rows`` and ``records``: the dataset's attested row count times the step's passes.
    """
    if not isinstance(receipt_wire, dict):
        raise ReceiptRejected("no_receipt", "a provider result must carry a usage receipt")
    try:  # ``verified``: this very receipt, verified under the key ``resolve`` gives for its kid
        receipt = verified if verified is not None else envelope.verify_signed(receipt_wire, resolve)
    except envelope.EnvelopeError as exc:
        raise ReceiptRejected(f"receipt_{exc.code}", f"receipt: {exc}") from None
    r = receipt.payload
    if receipt.kid != node.kid or r.get("node") != node.slug:
        raise ReceiptRejected("receipt_signer", "receipt not signed by the party's node")
    if set(r) != RECEIPT_FIELDS or r.get("type") != "usage_receipt":
        raise ReceiptRejected("receipt_fields", f"a usage receipt has exactly the fields {sorted(RECEIPT_FIELDS)}")
    algo = get_algorithm(job.algorithm)
    expected = {
        "job": str(job.id),
        "dataset": party.dataset_id,
        "right": party.right_id,
        "consumer": job.consumer.slug,
        "consumer_kid": job.consumer_node.kid,
        "operation": algo.operation,
        "step": asked.step,
        "round": asked.round,
        "request": asked.nonce,
    }
    for name, value in expected.items():
        if r.get(name) != value or type(r.get(name)) is not type(value):
            raise ReceiptRejected(f"receipt_{name}", f"receipt {name} {r.get(name)!r} is not {value!r}")
    attested = party.dataset.row_count
    if party.right is not None and party.right.row_count is not None:
        attested = min(attested, party.right.row_count)  # as sold, whatever the node announced since
    passes = algo.passes(job.params, asked.step)
    bound = attested * passes
    for name in ("rows", "records"):
        value = r.get(name)
        if not _whole(value) or not 0 <= value <= bound:
            raise ReceiptRejected(
                f"receipt_{name}", f"receipt {name} {value!r} is not a whole number in [0, {bound}] (attested rows)"
            )
    try:
        at = envelope.parse_time(r.get("at"))
    except envelope.EnvelopeError:
        raise ReceiptRejected("receipt_at", f"receipt time {r.get('at')!r} is not an RFC 3339 UTC time") from None
    issued, expires = envelope.parse_time(asked.issued_at), envelope.parse_time(asked.expires_at)
    if not issued - CLOCK_SKEW <= at <= min(expires, timezone.now()) + CLOCK_SKEW:
        raise ReceiptRejected("receipt_at", f"receipt time {r['at']} is outside the step's window {asked.issued_at}..")
    return receipt, passes


def _record_usage(
    *, job: Job, party: JobParty, asked: Message, receipt_wire: dict[str, Any], receipt: envelope.Opened, passes: int
) -> None:
    """Append a ``usage`` entry for a receipt :func:`_check_receipt` passed: a use, not yet a charge.

    Every use is on the ledger whatever becomes of the job; the job's ``settlement``
    entries say which uses are charged (only those of a job that delivered its output).
    The entry's time is the hub's: when it issued the step (rights are judged by it).
    """
    r = receipt.payload
    right = party.right
    issued = envelope.parse_time(asked.issued_at)
    if right is not None and issued > right.expires_at:
        raise ReceiptRejected("right_expired", f"the step was issued after right {right.id} expired")
    event_id = f"usage:{receipt.digest}"
    ledger_writer.entry_enqueue(
        kind="usage",
        event_id=event_id,
        payload={
            "job": str(job.id),
            "step": r["step"],
            "round": r["round"],
            "dataset": party.dataset_id,
            "right": right.id if right else None,
            "order": right.order_id if right else None,
            "consumer": job.consumer_id,
            "provider": party.dataset.organization_id,
            "operation": r["operation"],
            "rows": r["rows"],
            "records": r["records"],
            "passes": passes,
            **({"free": True, "preview": True} if right is None else {}),
            "receipt": receipt_wire,
        },
        producer_time=issued,
        dataset_id=party.dataset_id,
        consumer_id=job.consumer_id,
        provider_id=party.dataset.organization_id,
        right_id=right.id if right else None,
    )
    party.usage = [*party.usage, [event_id, r["rows"], r["records"]]]
    party.status = JobParty.Status.DONE  # written with the batch (``_Writes``)


def _settle(job: Job, party: JobParty, outcome: str, writes: _Writes | None = None) -> None:
    """Close a provider party's part in a job: on delivery one charged use, otherwise none.

    One ``settlement`` entry per (job, right) that recorded usage, naming those usage
    entries; bills, revenue and the offline verifier charge from these alone. Quota is
    consumed on delivery and released otherwise. The caller holds the right's lock; with
    ``writes`` holding the right, it is settled in memory and written with the batch.
    """
    if party.quota_settled or party.right_id is None:
        return
    delivered = outcome == "delivered"
    party.quota_settled = True
    if writes is not None and party.right_id in writes.rights:
        right = writes.rights[party.right_id]
        right_svc.right_settle_held(right, consumed=delivered)
        writes.settled.add(right.id)
        writes.parties[party.pk] = party
    else:
        right = right_svc.right_settle(right_id=party.right_id, consumed=delivered)
        party.save(update_fields=["quota_settled"])
    if not party.usage:
        return  # the provider's data was never touched: nothing to record or charge
    ledger_writer.entry_enqueue(
        kind="settlement",
        event_id=f"settlement:{job.id}:{party.right_id}",
        payload={
            "job": str(job.id),
            "right": party.right_id,
            "order": right.order_id,
            "dataset": party.dataset_id,
            "consumer": job.consumer_id,
            "provider": right.dataset.organization_id,
            "outcome": outcome,
            "usage": [event for event, _, _ in party.usage],  # the writer turns these into seqs
            "rows": sum(rows for _, rows, _ in party.usage),
            "records": sum(records for _, _, records in party.usage),
            "units": 1 if delivered else 0,
            "use": right.quota_used if delivered else None,
        },
        dataset_id=party.dataset_id,
        consumer_id=job.consumer_id,
        provider_id=right.dataset.organization_id,
        right_id=party.right_id,
    )


def models_retire_for_right(*, right_id: int, reason: str) -> int:
    """A right ended (revoked or expired): every model trained under it is retired. Each host that
    holds a part for this right is told to delete it; its signed answer goes on the ledger
    (``model_retired``). Runs in the caller's transaction; the steps leave after it commits."""
    hosts = JobParty.objects.filter(
        right_id=right_id, role="provider", job__algorithm="hetero_lr", job__status=Job.Status.SUCCEEDED
    ).select_related("job__consumer_node", "dataset")
    writes = _Writes()
    count = 0
    for host in hosts:
        job = host.job
        parties = _parties(job)
        send = Send(host.key, "lr_retire", {"dataset": host.dataset.local_name, "reason": reason})
        _steps(job, _view(job, parties), [send], parties, writes)
        count += 1
    # Every party of every job that aligned rows under the right forgets its alignment (the IDs
    # it learned are shared): it can no longer be reused, and nothing keeps it. Jobs still open
    # too: a revocation cancels them next, an expiry stops them at their next step.
    aligned = (
        Job.objects.filter(parties__right_id=right_id, algorithm__in=ALIGNING)
        .select_related("consumer_node")
        .distinct()
    )
    for job in aligned:
        parties = _parties(job)
        sends = [Send(p.key, "psi_forget", {}) for p in parties]
        _steps(job, _view(job, parties), sends, parties, writes)
    writes.flush()
    return count


ALIGNING = ("psi_align", "hetero_lr", "hetero_lr_score")  # the algorithms whose nodes keep an alignment


def _model_retired(*, job: Job, party: JobParty, node: Node, body: dict[str, Any], message: Message) -> str:
    """A host's signed answer to ``lr_retire``: its part of the model is gone; the ledger says so.

    A host that refuses (or answers anything but a deletion) is on the ledger too, with its code
    and reason and the digest of its signed answer: a regulator sees which part was not deleted.
    A node error is not a refusal: nothing is written, and the step is asked again.
    """
    if body.get("status") == "error":  # the node failed, it did not refuse: the resend beat asks again
        return "retire failed"
    result = body.get("result") if isinstance(body.get("result"), dict) else {}
    if body.get("status") != "ok" or result.get("deleted") is not True:
        _answer_refused(job=job, party=party, node=node, step="lr_retire", body=body, message=message)
        return "retire refused"
    payload = {"model": str(job.id), "right": party.right_id, "dataset": party.dataset_id, "node": node.slug}
    payload |= {"consumer": job.consumer_id, "reply": message.digest, "reason": str(result.get("reason", ""))}
    ledger_writer.entry_enqueue(
        kind="model_retired",
        event_id=f"model_retired:{job.id}:{party.right_id}",
        payload=payload,
        dataset_id=party.dataset_id,
        consumer_id=job.consumer_id,
        provider_id=node.organization_id,
        right_id=party.right_id,
    )
    return "retired"


def _alignment_forgotten(*, job: Job, party: JobParty, node: Node, body: dict[str, Any], message: Message) -> str:
    """A node's signed answer to ``psi_forget``. A refusal is on the ledger, like a model part's; a
    node error is not a refusal (the step is asked again)."""
    if body.get("status") == "error":
        return "forget failed"
    result = body.get("result") if isinstance(body.get("result"), dict) else {}
    if body.get("status") == "ok" and result.get("forgotten") is True:
        return "alignment forgotten"
    _answer_refused(job=job, party=party, node=node, step="psi_forget", body=body, message=message)
    return "forget refused"


def _answer_refused(
    *, job: Job, party: JobParty, node: Node, step: str, body: dict[str, Any], message: Message
) -> None:
    """A signed answer to a retirement step that is not a deletion, on the ledger as the node's refusal."""
    code = str(body.get("code", "") or ("not_deleted" if step == "lr_retire" else "not_forgotten"))
    status, reason = str(body.get("status", "")), str(body.get("reason", ""))
    _retirement_refused(
        job=job, party=party, node=node, step=step, code=code, reason=reason, status=status, reply=message.digest
    )


RETIREMENT_REFUSED = {"lr_retire": "model_retire_refused", "psi_forget": "alignment_forget_refused"}


def _retirement_refused(
    *,
    job: Job,
    party: JobParty,
    node: Node,
    step: str,
    code: str,
    reason: str,
    status: str = "",
    reply: str | None = None,
) -> None:
    """On the ledger: ``node`` did not delete what ``step`` asked (a model part, an alignment), with
    its code and reason and the digest of its signed answer (none when it never answered)."""
    kind = RETIREMENT_REFUSED[step]
    payload = {"model" if step == "lr_retire" else "job": str(job.id), "right": party.right_id}
    payload |= {"dataset": party.dataset_id, "node": node.slug, "consumer": job.consumer_id, "reply": reply}
    payload |= {"status": status[:20], "code": code[:40], "reason": reason[:200]}
    ledger_writer.entry_enqueue(
        kind=kind,
        event_id=f"{kind}:{reply}" if reply else f"{kind}:{job.id}:{node.slug}:{code}",
        payload=payload,
        dataset_id=party.dataset_id,
        consumer_id=job.consumer_id,
        provider_id=node.organization_id,
        right_id=party.right_id,
    )


def job_charges(job: Job) -> list[dict[str, Any]]:
    """What each right's settlement of ``job`` says (on the log): outcome, uses charged, records."""
    entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SETTLEMENT, payload__job=str(job.id)).order_by("seq")
    return [
        {
            "seq": e.seq,
            "right": e.payload["right"],
            "outcome": e.payload["outcome"],
            "units": e.payload["units"],
            "records": e.payload["records"],
        }
        for e in entries
    ]
