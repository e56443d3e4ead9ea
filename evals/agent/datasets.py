"""A finding's traces as a dataset, so that the change it suggests can be
benchmarked across routes with the existing benchmarks: each trace of the
finding is read from the project's Langfuse and becomes an item, the way
`dataset_build` makes items from traces: its input, and its output kept in
`metadata.output` with the expected output left for the team to write (the
traces of a finding are the ones that went wrong: their output is no
reference), unless `output_as="expected_output"` is asked. The same trace
always makes the same item, so doing it again updates the items instead of
adding them (and keeps the expected outputs the team wrote)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from evals.agent.models import AgentFinding
from evals.langfuse_client import LangfuseClient, LangfuseError
from evals.models import Dataset
from evals.services.datasets import dataset_create
from evals.services.datasets.store import langfuse_connection, upsert_items
from evals.services.datasets.traces import trace_row
from portal import audit
from portal.access import Actor

#: traces of one finding read into a dataset (a finding cites far fewer)
MAX_TRACES = 200
ITEM_FIELDS = ("input", "expected_output", "metadata", "source_trace_id")
#: where a trace's output goes: metadata.output (default; the expected output is the team's to write) or
#: the expected output (when the team knows these outputs are right)
OUTPUT_AS = ("metadata", "expected_output")


@dataclass
class FindingTraces:
    """What was read: the traces found, and the ids Langfuse no longer has or that make no item."""

    traces: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def default_name(finding: AgentFinding) -> str:
    return f"agent report {finding.report_id} #{finding.index}: {finding.title}"[:100]


def read_traces(client: LangfuseClient, trace_ids: list[str]) -> FindingTraces:
    """The finding's traces (outside any transaction); a trace Langfuse answers 404 for is missing."""
    read = FindingTraces()
    for trace_id in dict.fromkeys(str(t) for t in trace_ids[:MAX_TRACES]):
        try:
            read.traces.append(client.trace(trace_id))
        except LangfuseError as exc:
            if exc.status != 404:
                raise  # Langfuse refusing or down: nothing is written
            read.missing.append(trace_id)
    return read


def finding_dataset(*, actor: Actor, finding: AgentFinding, name: str | None = None,
                    output_as: str = "metadata") -> Dataset:
    """The finding's traces as items of a dataset of the report's project: the finding's dataset when it
    has one and no name is given, else the project's dataset of that name, created when there is none.
    Each trace's output goes to `metadata.output` (expected output empty, an update keeps what the team
    wrote there) or, with `output_as="expected_output"`, becomes the expected output.
    The team's admins and org admins; a project without Langfuse is a ValidationError ("langfuse")."""
    report = finding.report
    project = report.project
    actor.require_team_manager(project.team_id)
    if output_as not in OUTPUT_AS:
        raise ValidationError({"output_as": "'metadata' or 'expected_output'."})
    fields = ITEM_FIELDS if output_as == "expected_output" else tuple(f for f in ITEM_FIELDS
                                                                      if f != "expected_output")
    conn = langfuse_connection(project)
    with conn.client() as client:
        read = read_traces(client, list(finding.trace_ids or []))
    with transaction.atomic():
        dataset = finding.dataset if name is None and finding.dataset_id else None
        name = name or default_name(finding)
        description = f"{finding.title}\n\n{finding.problem}"[:500]
        dataset = dataset or Dataset.objects.filter(project=project, name=name).first() or dataset_create(
            actor=actor, project=project, data={"name": name, "description": description})
        rows = {}
        for trace in read.traces:
            row = trace_row(dataset, trace, output_as)
            if row is None:
                read.missing.append(str(trace.get("id") or ""))  # no input, or too large to be an item
                continue
            row.metadata = {**row.metadata, "agent_report": report.pk, "agent_finding": finding.index}
            rows[str(row.external_id)] = row
        created, updated = upsert_items(dataset, list(rows.values()), fields)
        AgentFinding.objects.filter(pk=finding.pk).update(dataset=dataset)
        finding.dataset = dataset
        audit.record(actor, "dataset.from_finding", dataset, after={
            "report": report.pk, "finding": finding.index, "created": created, "updated": updated,
            "output_as": output_as,
            "missing": read.missing[:50]})
    return dataset
