"""REST API of the ledger: entries, proofs, checkpoints, cosignatures, witnesses, audit bundles. Thin."""

from __future__ import annotations

import base64
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger import bundle, selectors, services
from ledger.hubkey import hub_kid, hub_public_b64
from ledger.models import Checkpoint, LedgerEntry, Witness
from marketplace import api_input, idempotency
from marketplace import selectors as market
from marketplace.api_input import Id, ScalarsField, StrictInteger, StrictSerializer
from marketplace.api_schema import IDEMPOTENCY
from portal import selectors as access


class IsRegulator(permissions.BasePermission):
    message = "Only regulators may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        org = market.current_org(request.user)
        return bool(org is not None and org.is_regulator)


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
    dataset_id = Id(required=False)
    consumer_id = Id(required=False)
    provider_id = Id(required=False)
    right_id = Id(required=False)
    organization_id = Id(required=False, help_text="Entries naming this organisation as consumer or provider.")
    purpose = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Under a right whose declared purpose contains this, or of this category.",
    )
    since = serializers.DateTimeField(required=False, help_text="Integrated at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Integrated before (ISO 8601).")
    seq_from = StrictInteger(required=False, min_value=0, help_text="First sequence number included.")
    seq_to = StrictInteger(required=False, min_value=0, help_text="First sequence number excluded.")


class EntryList(generics.ListAPIView):
    """List the ledger entries you may read, oldest first.

    Regulators and staff read the whole log; others the entries that name their
    organisation. Filter by kind, party (or either party: ``organization_id``), declared
    purpose, time ``[since, until)`` and sequence ``[seq_from, seq_to)``; paginated, in a
    number of queries that does not grow with the page.
    """

    serializer_class = LedgerEntrySerializer
    permission_classes = [permissions.IsAuthenticated]
    filter_backends: list[Any] = []
    role_required = False

    @extend_schema(parameters=[EntryFilters])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        if getattr(self, "swagger_fake_view", False):
            return LedgerEntry.objects.none()
        filters = api_input.query(EntryFilters, self.request)
        qs = access.search(
            access.visible_entries(self.request.user),
            organization_id=filters.pop("organization_id", None),
            purpose=filters.pop("purpose", None),
        )
        return selectors.entries_filter(qs, **filters).order_by("seq")


class TreeSize(serializers.Serializer):
    tree_size = StrictInteger(
        required=False, min_value=1, help_text="Prove against this tree size (default: the latest checkpoint)."
    )


class EntryDetail(APIView):
    """Show one ledger entry with its RFC 9162 inclusion proof against a signed checkpoint."""

    permission_classes = [permissions.IsAuthenticated]
    role_required = False

    @extend_schema(parameters=[TreeSize], responses=LedgerEntryProofSerializer)
    def get(self, request: Request, seq: int) -> Response:
        entry = get_object_or_404(access.visible_entries(request.user), seq=seq)
        size = api_input.query(TreeSize, request).get("tree_size")
        data = dict(LedgerEntrySerializer(entry).data)
        data["inclusion"] = selectors.inclusion(entry, size)
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
    serializer_class = CheckpointSerializer
    queryset = Checkpoint.objects.order_by("-size")
    filter_backends: list[Any] = []
    error_statuses = (409,)

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.request.method == "POST":
            return [permissions.IsAdminUser()]
        return [permissions.AllowAny()]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """List the signed checkpoints, newest first, with their witnesses' cosignatures. Public."""
        return super().get(request, *args, **kwargs)

    @extend_schema(request=None, responses={201: CheckpointSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Sign a checkpoint of the log now (staff); 409 while the log is empty."""
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        cp = services.checkpoint_create()
        if cp is None:
            return Response({"error": {"code": "empty_log", "message": "the log is empty", "fields": {}}}, 409)
        return Response(CheckpointSerializer(cp).data, status=201)


class CheckpointLatest(APIView):
    """Show the latest signed checkpoint (a witness cosigns it). Public; 404 before the first."""

    permission_classes = [permissions.AllowAny]
    refers_to_objects = True

    @extend_schema(responses=CheckpointSerializer)
    def get(self, request: Request) -> Response:
        cp = selectors.checkpoint_latest()
        if cp is None:
            return Response({"error": {"code": "not_found", "message": "no checkpoint yet", "fields": {}}}, 404)
        return Response(CheckpointSerializer(cp).data)


class CheckpointDetail(generics.RetrieveAPIView):
    """Show the signed checkpoint of one tree size. Public."""

    serializer_class = CheckpointSerializer
    permission_classes = [permissions.AllowAny]
    queryset = Checkpoint.objects.all()
    lookup_field = "size"


class CosignatureSerializer(StrictSerializer):
    note = serializers.CharField(
        max_length=10_000, trim_whitespace=False, help_text="The checkpoint note with your cosignature line appended."
    )


class CosignatureCreate(APIView):
    """Cosign a checkpoint: a regulator's witness posts the note with its signature line appended."""

    permission_classes = [permissions.IsAuthenticated, IsAuditor]

    @extend_schema(request=CosignatureSerializer, responses={201: CheckpointSerializer})
    def post(self, request: Request, size: int) -> Response:
        s = CosignatureSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        cp = get_object_or_404(Checkpoint, size=size)
        org = market.current_org(request.user)
        if org is None:
            raise PermissionDenied("Your account belongs to no organisation.")
        services.cosignature_add(checkpoint=cp, note=s.validated_data["note"].encode(), organization_id=org.id)
        cp.refresh_from_db()
        return Response(CheckpointSerializer(cp).data, status=201)


class SizesSerializer(serializers.Serializer):
    to = StrictInteger(min_value=1, help_text="The newer tree size (a signed checkpoint's).")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = StrictInteger(min_value=1, help_text="The older tree size (at most to).")
        return fields


class ConsistencyProof(APIView):
    """Prove that one tree size extends another: PROOF(from, D[to]) of RFC 9162 §2.1.4, both roots. Public."""

    permission_classes = [permissions.AllowAny]
    refers_to_objects = True  # a size beyond the log is a 404

    @extend_schema(parameters=[SizesSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        sizes = api_input.query(SizesSerializer, request)
        if sizes["from"] > sizes["to"]:
            raise serializers.ValidationError({"from": ["The older size must not exceed the newer."]})
        return Response(selectors.consistency(sizes["from"], sizes["to"]))


class WitnessSerializer(serializers.ModelSerializer):
    class Meta:
        model = Witness
        fields = ["name", "vkey", "active", "organization_id", "created_at"]
        read_only_fields = ["name", "active", "organization_id", "created_at"]


class WitnessCreateSerializer(StrictSerializer):
    vkey = serializers.CharField(max_length=500, help_text="The cosigner's signed-note verifier key.")


class WitnessList(generics.ListCreateAPIView):
    serializer_class = WitnessSerializer
    queryset = Witness.objects.order_by("name")
    filter_backends: list[Any] = []
    error_statuses = (409,)

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.request.method == "POST":
            return [permissions.IsAuthenticated(), IsRegulator()]
        return [permissions.AllowAny()]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """List the witnesses whose cosignatures the log accepts, with their verifier keys. Public."""
        return super().get(request, *args, **kwargs)

    @extend_schema(request=WitnessCreateSerializer, responses={201: WitnessSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Register your regulator's witness key (its signed-note verifier key). Regulators only."""
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        s = WitnessCreateSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        org = market.current_org(request.user)
        witness = services.witness_register(organization_id=org.id, vkey=s.validated_data["vkey"])
        return Response(WitnessSerializer(witness).data, status=201)


class LogKey(APIView):
    """Show what a witness or verifier pins: the log's origin, verifier key and hub key. Public."""

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
    dataset = Id(required=False, help_text="Only this dataset's entries.")
    consumer = Id(required=False, help_text="Only this consumer's entries.")
    seq_from = StrictInteger(required=False, min_value=0)
    seq_to = StrictInteger(required=False, min_value=0)


class BundleDownload(APIView):
    """Download an audit bundle (JSON Lines): entries, proofs and checkpoints an offline verifier checks.

    For a dataset, a consumer, a sequence range, or the whole log. Regulators and staff only.
    """

    permission_classes = [permissions.IsAuthenticated, IsAuditor]
    refers_to_objects = True  # 404 before the first checkpoint

    @extend_schema(parameters=[BundleFilters], responses={(200, "application/x-ndjson"): OpenApiTypes.STR})
    def get(self, request: Request) -> StreamingHttpResponse:
        d = api_input.query(BundleFilters, request)
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


class CorrectionSerializer(StrictSerializer):
    corrects_seq = StrictInteger(min_value=0, help_text="The entry this one corrects.")
    reason = serializers.CharField(max_length=2000, min_length=1)
    amends = ScalarsField(default=dict, help_text="What the correction changes, e.g. an amount.")


class CorrectionCreate(APIView):
    """Append a signed correction entry pointing at the entry it corrects (staff).

    Nothing is ever edited; the ``Idempotency-Key`` becomes the entry's event id, so a
    retried request returns the same entry and a reused key with another body is a 409.
    """

    permission_classes = [permissions.IsAdminUser]
    error_statuses = (409,)
    refers_to_objects = True

    @extend_schema(request=CorrectionSerializer, responses={201: LedgerEntrySerializer}, parameters=[IDEMPOTENCY])
    def post(self, request: Request) -> Response:
        s = CorrectionSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "")
        if not idempotency.KEY.fullmatch(key):
            raise serializers.ValidationError(
                {"idempotency_key": ["An Idempotency-Key of 1 to 80 printable ASCII characters is required."]}
            )
        entry = services.entry_correct(
            corrects_seq=s.validated_data["corrects_seq"],
            reason=s.validated_data["reason"],
            amends=s.validated_data["amends"],
            event_id=f"correction:{key}",
        )
        return Response(LedgerEntrySerializer(entry).data, status=201)
