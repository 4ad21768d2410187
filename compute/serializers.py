from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from compute.algorithms import REGISTRY
from compute.models import Job, JobParty, Message
from compute.params import MAX_RIGHTS
from marketplace.api_input import Id, StrictSerializer


class JobCreateSerializer(StrictSerializer):
    algorithm = serializers.ChoiceField(choices=sorted(REGISTRY))
    params = serializers.DictField()
    rights = serializers.ListField(child=Id(), min_length=1, max_length=MAX_RIGHTS)


class JobPartySerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.slug", help_text="The node that runs this party's steps.")
    dataset_name = serializers.CharField(
        source="dataset.name", default=None, allow_null=True, help_text="Null for the consumer's own party."
    )
    dataset = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    right = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = JobParty
        fields = ["key", "role", "node", "dataset", "dataset_name", "right", "status"]


class MessageSerializer(serializers.ModelSerializer):
    """A signed envelope as it travelled (its body sealed to the recipient), with its digest."""

    class Meta:
        model = Message
        fields = [
            "created_at", "direction", "step", "round", "sender", "recipient", "kid", "digest",
            "in_reply_to", "refused_code", "refused_reason", "envelope",
        ]  # fmt: skip


class JobSerializer(serializers.ModelSerializer):
    parties = JobPartySerializer(many=True, read_only=True)
    title = serializers.SerializerMethodField(help_text="The job in words: algorithm, column and datasets.")

    class Meta:
        model = Job
        fields = [
            "id",
            "title",
            "algorithm",
            "params",
            "preview",
            "status",
            "progress",
            "outputs",
            "error",
            "created_at",
            "updated_at",
            "finished_at",
            "parties",
        ]

    @extend_schema_field(serializers.CharField())
    def get_title(self, job: Job) -> str:
        return job.title


class JobDetailSerializer(JobSerializer):
    messages = serializers.SerializerMethodField(help_text="Every signed message of the job, in order.")

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "messages"]

    @extend_schema_field(MessageSerializer(many=True))
    def get_messages(self, job: Job) -> list[dict[str, Any]]:
        return MessageSerializer(job.messages.order_by("created_at", "id"), many=True).data  # type: ignore[return-value]
