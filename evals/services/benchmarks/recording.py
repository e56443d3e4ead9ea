"""A benchmark run in Langfuse: the dataset (created if missing, its items
pushed under their stable ids), and each route of the run as one dataset run
named `<benchmark> #<run id> (<route>)`, one run item per dataset item linked
to the trace of the route's call, with the evaluators' scores on that trace.
Langfuse is where results are also shown, not where they live: a failure is
kept as `Recorder.error` and the run goes on."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import BenchmarkResult, BenchmarkRun, Dataset, DatasetItem
from evals.services.benchmarks.attempts import Judge
from evals.services.datasets import MAX_DATASET_ITEMS
from evals.services.judging import LANGFUSE_TYPES, ensure_score_config
from gateway.models import ModelRoute

SCORE_NAMESPACE = uuid.UUID("0b7f3d52-9a3e-4c1b-8f0e-5d6a2c9e4b17")


def score_id(run: BenchmarkRun, item: DatasetItem, route: ModelRoute, judge_: Judge) -> str:
    return str(uuid.uuid5(SCORE_NAMESPACE, f"{run.pk}:{item.pk}:{route.pk}:{judge_.version.pk}"))


def item_body(item: DatasetItem, dataset_name: str) -> dict[str, Any]:
    body = {"id": item.external_id, "datasetName": dataset_name, "input": item.input,
            "expectedOutput": item.expected_output, "metadata": item.metadata or None}
    if item.source_trace_id:
        body["sourceTraceId"] = item.source_trace_id
    return body


def push_dataset(client: LangfuseClient, dataset: Dataset, items: list[DatasetItem]) -> str:
    """The dataset in Langfuse, created if missing, with each item under its
    stable id (`external_id`), pushed when missing or changed. Its name."""
    name = dataset.langfuse_name or dataset.name
    if client.dataset(name) is None:
        client.create_dataset(name, dataset.description, {"portal_dataset": dataset.pk})
    # Read at most what such a dataset can hold: the host is the tenant's choice, its pages may never end.
    listed = itertools.islice(client.dataset_items(name), len(items) + MAX_DATASET_ITEMS)
    there = {i["id"]: i for i in listed if isinstance(i, dict) and isinstance(i.get("id"), str)}
    for item in items:
        body, have = item_body(item, name), there.get(item.external_id)
        if have is None or any(have.get(k) != body[k] for k in ("input", "expectedOutput", "metadata")):
            client.upsert_dataset_item(body)
    if not dataset.langfuse_name:
        Dataset.objects.filter(pk=dataset.pk, langfuse_name="").update(langfuse_name=name)
    return name


class Recorder:
    """Writes each result to Langfuse: a dataset run item linked to the route
    call's trace, and the evaluators' scores on that trace. After a Langfuse
    failure (beyond the client's retries) it stops writing and keeps the error."""

    def __init__(self, client: LangfuseClient | None, run: BenchmarkRun, judges: list[Judge]) -> None:
        self.client, self.run, self.judges = client, run, judges
        self.error = "" if client else "The project has no Langfuse connection."
        self.recorded = 0

    def run_name(self, route: str) -> str:
        return f"{self.run.langfuse_run_name} ({route})"

    def prepare(self, dataset: Dataset, items: list[DatasetItem]) -> None:
        if self.client is None:
            return
        try:
            push_dataset(self.client, dataset, items)
            for j in self.judges:
                j.config_id = ensure_score_config(self.client, j.version)
        except LangfuseError as exc:
            self.error = f"Langfuse failed: {exc}"[:300]

    def record(self, result: BenchmarkResult, item: DatasetItem, route: ModelRoute) -> None:
        if self.client is None or self.error or not result.trace_id:
            return  # a failed call has no trace to link
        meta = {"portal_benchmark": self.run.benchmark_id, "portal_benchmark_run": self.run.pk, "route": route.name}
        try:
            self.client.create_dataset_run_item({
                "runName": self.run_name(route.name), "datasetItemId": item.external_id, "traceId": result.trace_id,
                "runDescription": f"Portal benchmark '{self.run.benchmark.name}', route {route.name}",
                "metadata": meta})
            for j in self.judges:
                score = result.scores.get("evaluators", {}).get(j.name)
                if not score or "error" in score:
                    continue
                kind = j.version.score_type
                self.client.create_score({
                    "id": score_id(self.run, item, route, j), "traceId": result.trace_id, "name": j.name,
                    "value": score["label"] if kind == "categorical" else score["value"],
                    "dataType": LANGFUSE_TYPES[kind], "comment": score.get("comment") or None,
                    "configId": j.config_id, "metadata": {**meta, "portal_evaluator_version": j.version.version}})
            self.recorded += 1
        except LangfuseError as exc:
            self.error = f"Langfuse failed: {exc}"[:300]
