"""REST API of the ledger: entries, proofs, checkpoints, cosignatures, witnesses, audit bundles. Thin."""

from __future__ import annotations

import base64
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger import bundle, selectors, services
from ledger.hubkey import hub_kid, hub_public_b64
from ledger.models import Checkpoint, LedgerEntry, Witness
from marketplace import selectors as market
from portal import selectors as access


class IsAuditor(permissions.BasePermission):
    message = "Only regulators and staff may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return access.is_auditor(request.user)


class LedgerEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = LedgerEntry
        fields = [
            "seq",
            "kind",
            "version",
            "event_id",
            "payload",
            "body",
            "prev_hash",
            "entry_hash",
            "leaf_hash",
            "hub_kid",
            "hub_sig",
            "producer_time",
            "integrated_at",
        ]


class LedgerEntryProofSerializer(LedgerEntrySerializer):
    """An entry, its RFC 9162 inclusion proof (leaf index, tree size, path, root) and, for
    ``usage``, the node-signed receipt batch that vouches for its receipt (null until one does)."""

    inclusion = serializers.DictField(read_only=True)
    attested_by = serializers.DictField(read_only=True, allow_null=True)

    class Meta(LedgerEntrySerializer.Meta):
        fields = [*LedgerEntrySerializer.Meta.fields, "inclusion", "attested_by"]


class EntryFilters(serializers.Serializer):
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices, required=False)
    dataset_id = serializers.IntegerField(required=False)
    consumer_id = serializers.IntegerField(required=False)
    provider_id = serializers.IntegerField(required=False)
    right_id = serializers.IntegerField(required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    seq_from = serializers.IntegerField(required=False, min_value=0)
    seq_to = serializers.IntegerField(required=False, min_value=0)


class EntryList(generics.ListAPIView):
    """Entries visible to the caller, filtered by kind, party, time ``[since, until)`` and ``[seq_from, seq_to)``."""

    serializer_class = LedgerEntrySerializer
    permission_classes = [permissions.IsAuthenticated]
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        filters = EntryFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        qs = access.visible_entries(self.request.user)
        return selectors.entries_filter(qs, **filters.validated_data).order_by("seq")


class EntryDetail(APIView):
    """One entry with its inclusion proof (``?tree_size=``; default: the latest checkpoint covering it)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        parameters=[OpenApiParameter("tree_size", int, description="Prove against this tree size.")],
        responses=LedgerEntryProofSerializer,
    )
    def get(self, request: Request, seq: int) -> Response:
        entry = get_object_or_404(access.visible_entries(request.user), seq=seq)
        size = request.query_params.get("tree_size")
        data = dict(LedgerEntrySerializer(entry).data)
        data["inclusion"] = selectors.inclusion(entry, int(size) if size and size.isdigit() else None)
        data["attested_by"] = selectors.receipt_attestation(entry)
        return Response(data)


class CheckpointSerializer(serializers.ModelSerializer):
    root = serializers.SerializerMethodField()
    note = serializers.SerializerMethodField()
    cosignatures = serializers.SerializerMethodField()

    class Meta:
        model = Checkpoint
        fields = ["size", "root", "origin", "key_name", "hub_kid", "created_at", "note", "cosignatures"]

    def get_root(self, cp: Checkpoint) -> str:
        return base64.b64encode(bytes(cp.root)).decode()

    def get_note(self, cp: Checkpoint) -> str:
        return selectors.checkpoint_note(cp)

    def get_cosignatures(self, cp: Checkpoint) -> list[dict[str, Any]]:
        return [
            {"witness": c.witness.name, "timestamp": c.timestamp, "line": c.line}
            for c in cp.cosignatures.select_related("witness")
        ]


class CheckpointList(generics.ListCreateAPIView):
    """GET: signed checkpoints, newest first. POST (staff): sign one now."""

    serializer_class = CheckpointSerializer
    queryset = Checkpoint.objects.order_by("-size")
    filter_backends: list[Any] = []

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.request.method == "POST":
            return [permissions.IsAdminUser()]
        return [permissions.IsAuthenticated()]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        cp = services.checkpoint_create()
        if cp is None:
            return Response({"error": {"code": "empty_log", "message": "the log is empty", "fields": {}}}, 409)
        return Response(CheckpointSerializer(cp).data, status=201)


class CheckpointLatest(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=CheckpointSerializer)
    def get(self, request: Request) -> Response:
        cp = selectors.checkpoint_latest()
        if cp is None:
            return Response({"error": {"code": "not_found", "message": "no checkpoint yet", "fields": {}}}, 404)
        return Response(CheckpointSerializer(cp).data)


class CheckpointDetail(generics.RetrieveAPIView):
    serializer_class = CheckpointSerializer
    permission_classes = [permissions.IsAuthenticated]
    queryset = Checkpoint.objects.all()
    lookup_field = "size"


class CosignatureCreate(APIView):
    """A regulator's witness posts the checkpoint note with its cosignature line appended."""

    permission_classes = [permissions.IsAuthenticated, IsAuditor]

    @extend_schema(
        request=inline_serializer("Cosignature", {"note": serializers.CharField()}),
        responses={201: CheckpointSerializer},
    )
    def post(self, request: Request, size: int) -> Response:
        cp = get_object_or_404(Checkpoint, size=size)
        org = market.current_org(request.user)
        note = request.data.get("note") if isinstance(request.data, dict) else None
        if org is None or not isinstance(note, str):
            raise serializers.ValidationError({"note": ["The cosigned checkpoint note is required."]})
        services.cosignature_add(checkpoint=cp, note=note.encode(), organization_id=org.id)
        cp.refresh_from_db()
        return Response(CheckpointSerializer(cp).data, status=201)


class ConsistencyProof(APIView):
    """PROOF(from, D[to]) of RFC 9162 §2.1.4 with both roots."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("from", int, required=True, description="The older tree size."),
            OpenApiParameter("to", int, required=True, description="The newer tree size."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        try:
            size1, size2 = int(request.query_params["from"]), int(request.query_params["to"])
        except (KeyError, ValueError):
            raise serializers.ValidationError({"from": ["from and to must be tree sizes."]})
        return Response(selectors.consistency(size1, size2))


class WitnessSerializer(serializers.ModelSerializer):
    class Meta:
        model = Witness
        fields = ["name", "vkey", "active", "organization_id", "created_at"]
        read_only_fields = ["name", "active", "organization_id", "created_at"]


class WitnessList(generics.ListCreateAPIView):
    """Witness keys; a regulator registers its own cosigner vkey with POST."""

    serializer_class = WitnessSerializer
    queryset = Witness.objects.order_by("name")
    permission_classes = [permissions.IsAuthenticated]
    filter_backends: list[Any] = []

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        org = market.current_org(request.user)
        if org is None or not org.is_regulator:
            return Response({"error": {"code": "forbidden", "message": "regulators only", "fields": {}}}, 403)
        witness = services.witness_register(organization_id=org.id, vkey=str(request.data.get("vkey", "")))
        return Response(WitnessSerializer(witness).data, status=201)


class LogKey(APIView):
    """What a witness or verifier pins: the log's origin and signed-note verifier key."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(
            {
                "origin": settings.USUFRUCT_LOG_ORIGIN,
                "vkey": services.log_vkey(),
                "kid": hub_kid(),
                "public_key": hub_public_b64(),
            }
        )


class BundleFilters(serializers.Serializer):
    dataset = serializers.IntegerField(required=False)
    consumer = serializers.IntegerField(required=False)
    seq_from = serializers.IntegerField(required=False, min_value=0)
    seq_to = serializers.IntegerField(required=False, min_value=0)


class BundleDownload(APIView):
    """The audit bundle (JSON Lines) for a dataset, a consumer, a range, or the whole log; auditors only."""

    permission_classes = [permissions.IsAuthenticated, IsAuditor]

    @extend_schema(parameters=[BundleFilters], responses={(200, "application/x-ndjson"): OpenApiTypes.STR})
    def get(self, request: Request) -> StreamingHttpResponse:
        f = BundleFilters(data=request.query_params)
        f.is_valid(raise_exception=True)
        d = f.validated_data
        lines = bundle.bundle_lines(
            dataset_id=d.get("dataset"),
            consumer_id=d.get("consumer"),
            seq_from=d.get("seq_from"),
            seq_to=d.get("seq_to"),
        )
        first = next(lines)  # raises ProofUnavailable before any byte is sent when there is no checkpoint
        name = "-".join(f"{k}{v}" for k, v in d.items()) or "all"
        response = StreamingHttpResponse(_chain(first, lines), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="usufruct-ledger-{name}.jsonl"'
        return response


def _chain(first: str, rest: Any) -> Any:
    yield first
    yield from rest


class CorrectionSerializer(serializers.Serializer):
    corrects_seq = serializers.IntegerField(min_value=0)
    reason = serializers.CharField(max_length=2000)
    amends = serializers.DictField(default=dict, help_text="What the correction changes, e.g. an amount.")


class CorrectionCreate(APIView):
    """Platform staff append a signed ``correction`` entry pointing at the entry it corrects.

    Nothing is ever edited; the ``Idempotency-Key`` becomes the entry's event id, so a
    retried request returns the same entry and a reused key with another body is a 409.
    """

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(
        request=CorrectionSerializer,
        responses={201: LedgerEntrySerializer},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)],
    )
    def post(self, request: Request) -> Response:
        s = CorrectionSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "")
        if not key or len(key) > 80:
            raise serializers.ValidationError(
                {"idempotency_key": ["An Idempotency-Key of 1 to 80 characters is required."]}
            )
        entry = services.entry_correct(
            corrects_seq=s.validated_data["corrects_seq"],
            reason=s.validated_data["reason"],
            amends=s.validated_data["amends"],
            event_id=f"correction:{key}",
        )
        return Response(LedgerEntrySerializer(entry).data, status=201)
