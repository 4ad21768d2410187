from __future__ import annotations

from rest_framework import serializers

from compute.models import Job, JobParty


class JobCreateSerializer(serializers.Serializer):
    algorithm = serializers.CharField(max_length=40)
    params = serializers.DictField()
    rights = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)


class JobPartySerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.slug")
    dataset_name = serializers.CharField(source="dataset.name", default=None)

    class Meta:
        model = JobParty
        fields = ["key", "role", "node", "dataset", "dataset_name", "right", "status"]


class JobSerializer(serializers.ModelSerializer):
    parties = JobPartySerializer(many=True, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
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
