"""Evaluations: Langfuse connections of projects, evaluators, schedules,
runs, scores, datasets and benchmarks."""

from __future__ import annotations

from django.db import models

from portal import crypto
from portal.models import Project


class LangfuseConnection(models.Model):
    """A portal project's own Langfuse project: where the gateway sends the
    project's traces, and where evaluations read traces and write scores.
    The secret key is encrypted at rest and never returned."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="langfuse_connection")
    host = models.URLField(max_length=300)
    public_key = models.CharField(max_length=200)
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(default=True)
    server_version = models.CharField(max_length=50, blank=True)
    langfuse_project_id = models.CharField(max_length=200, blank=True)
    langfuse_project_name = models.CharField(max_length=200, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project} -> {self.host}"

    def secret_key(self) -> str:
        return crypto.decrypt_json(self.secret_encrypted).get("secret_key", "")

    def set_secret_key(self, value: str) -> None:
        self.secret_encrypted = crypto.encrypt_json({"secret_key": value})

    def client(self, **kwargs: object) -> object:
        from evals.langfuse_client import LangfuseClient

        return LangfuseClient(self.host, self.public_key, self.secret_key(), **kwargs)  # type: ignore[arg-type]
