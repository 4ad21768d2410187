from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import services
from compute.models import Job
from compute.serializers import JobCreateSerializer, JobSerializer
from marketplace.api import IDEMPOTENCY, org_of


class JobListCreate(APIView):
    """The consumer's jobs; POST submits one (``Idempotency-Key`` required)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=JobSerializer(many=True))
    def get(self, request: Request) -> Response:
        jobs = Job.objects.filter(consumer=org_of(request)).prefetch_related("parties__node", "parties__dataset")
        return Response(JobSerializer(jobs, many=True).data)

    @extend_schema(
        request=JobCreateSerializer, responses={201: JobSerializer, 200: JobSerializer}, parameters=[IDEMPOTENCY]
    )
    def post(self, request: Request) -> Response:
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
        return Response(JobSerializer(job).data, status=201 if created else 200)


class JobDetail(generics.RetrieveAPIView):
    serializer_class = JobSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        return Job.objects.filter(consumer=org_of(self.request)).prefetch_related("parties__node", "parties__dataset")


class JobCancel(APIView):
    """Stop one of your running jobs at its next step; a cancelled job charges nothing."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={200: JobSerializer})
    def post(self, request: Request, pk: str) -> Response:
        job = services.job_cancel(consumer=org_of(request), job_id=pk)
        return Response(JobSerializer(job).data)


class PreviewSerializer(serializers.Serializer):
    consumer_dataset = serializers.IntegerField(help_text="One of your own datasets with an ID column.")


class OverlapPreview(APIView):
    """Free, rate-limited, noised estimate of how many of your IDs a dataset holds."""

    permission_classes = [permissions.IsAuthenticated]

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
        )
        return Response(JobSerializer(job).data, status=201 if created else 200)
