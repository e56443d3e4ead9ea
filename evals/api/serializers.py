from __future__ import annotations

from rest_framework import serializers

from evals.models import LangfuseConnection


class LangfuseConnectionSerializer(serializers.ModelSerializer):
    secret_key = serializers.CharField(write_only=True, required=False, max_length=300, trim_whitespace=True,
                                       help_text="Write-only. Optional on update (the stored one is kept).")

    class Meta:
        model = LangfuseConnection
        fields = ["host", "public_key", "secret_key", "enabled", "server_version", "langfuse_project_id",
                  "langfuse_project_name", "checked_at", "updated_at"]
        read_only_fields = ["server_version", "langfuse_project_id", "langfuse_project_name", "checked_at",
                            "updated_at"]
