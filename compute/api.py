"""Compute REST API: jobs and overlap previews. Thin; writes go through ``compute.services``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import params, services
from compute.models import Job
from compute.serializers import JobCreateSerializer, JobDetailSerializer, JobSerializer
from marketplace.api import org_of
from marketplace.api_input import Id, StrictSerializer
from marketplace.api_schema import IDEMPOTENCY, component
from marketplace.permissions import IsConsumer


def _job_request() -> dict[str, Any]:
    branches = params.job_request_schema()["branches"]
    refs = {name: component(f"JobRequest_{name}", schema) for name, schema in branches.items()}
    return component(
        "JobRequest",
        {
            "oneOf": list(refs.values()),
            "discriminator": {"propertyName": "algorithm", "mapping": {n: r["$ref"] for n, r in refs.items()}},
            "description": "A job: the algorithm, its parameters (their schema depends on the algorithm) "
            "and the usage rights it runs under.",
        },
    )


JOB_REQUEST = _job_request()


def _jobs(request: Request) -> QuerySet[Job]:
    return Job.objects.filter(consumer=org_of(request)).prefetch_related("parties__node", "parties__dataset")


class JobListCreate(APIView):
    permission_classes = [permissions.IsAuthenticated, IsConsumer]
    error_statuses = (409,)
    refers_to_objects = True

    @extend_schema(responses=JobSerializer(many=True))
    def get(self, request: Request) -> Response:
        """List your organisation's jobs, newest first, with their parties and progress."""
        return Response(JobSerializer(_jobs(request), many=True).data)

    @extend_schema(
        request={"application/json": JOB_REQUEST},
        responses={201: JobDetailSerializer, 200: JobDetailSerializer},
        parameters=[IDEMPOTENCY],
    )
    def post(self, request: Request) -> Response:
        """Submit a federated job under your usage rights; each provider's rows stay on its node.

        ``params`` follows the chosen algorithm's schema (``JobRequest_<algorithm>``). One
        quota unit is reserved on each right; a job that fails or is cancelled charges
        nothing. Rights you do not hold are a 404, an expired or exhausted right a 409.
        """
        s = JobCreateSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        job, created = services.job_submit(
            consumer=org_of(request),
            user=request.user,
            algorithm=s.validated_data["algorithm"],
            params=s.validated_data["params"],
            rights=s.validated_data["rights"],
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        return Response(JobDetailSerializer(job).data, status=201 if created else 200)


class JobDetail(generics.RetrieveAPIView):
    """Show one of your jobs: status, progress, outputs, parties and every signed message."""

    serializer_class = JobDetailSerializer
    permission_classes = [permissions.IsAuthenticated, IsConsumer]

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        return _jobs(self.request)


class JobCancel(APIView):
    """Cancel one of your running jobs: it stops at its next step and charges nothing."""

    permission_classes = [permissions.IsAuthenticated, IsConsumer]
    error_statuses = (409,)

    @extend_schema(request=None, responses={200: JobSerializer})
    def post(self, request: Request, pk: str) -> Response:
        job = services.job_cancel(consumer=org_of(request), job_id=pk)
        return Response(JobSerializer(job).data)


class PreviewSerializer(StrictSerializer):
    consumer_dataset = Id(help_text="One of your own datasets with an ID column, hosted on your node.")


class OverlapPreview(APIView):
    """Ask for a free overlap preview: a noised estimate of how many of your IDs the dataset holds.

    Runs as a private set intersection between your node and the provider's; rate-limited
    per dataset and per consumer (429).
    """

    permission_classes = [permissions.IsAuthenticated, IsConsumer]
    error_statuses = (409, 429)
    kind = "overlap"

    @extend_schema(
        request=PreviewSerializer, responses={201: JobSerializer, 200: JobSerializer}, parameters=[IDEMPOTENCY]
    )
    def post(self, request: Request, pk: int) -> Response:
        s = PreviewSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        job, created = services.preview_request(
            consumer=org_of(request),
            user=request.user,
            dataset_id=pk,
            consumer_dataset_id=s.validated_data["consumer_dataset"],
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            kind=self.kind,
        )
        return Response(JobSerializer(job).data, status=201 if created else 200)


class ValuePreview(OverlapPreview):
    """Ask for a free value preview: per feature of the dataset, its information value and AUC
    against your label on the overlap — an estimate, with differential-privacy noise.

    Your node encrypts your labels under a fresh key and proves each is 0 or 1; the provider's
    node sums them per bin of its own feature values; the hub matches blinded IDs. No ID, label
    or feature value leaves a node. Shares the rate limits and the lifetime ε of previews (429).
    """

    kind = "value"
