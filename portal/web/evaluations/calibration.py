"""Calibration: how well an evaluator's judge agrees with the expected labels of a dataset."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from evals.api.datasets.calibration_serializers import CalibrationRequestSerializer
from evals.models import Dataset, EvalRun, EvalScore, Evaluator
from evals.services import calibration as services
from portal.exceptions import Conflict
from portal.tenancy import Parent
from portal.web.base import PROJECT
from portal.web.evaluations.common import ProjectPage, drf_errors, errors_of, optional

FIRST_SUBJECT = Subquery(EvalScore.objects.filter(run=OuterRef("pk")).order_by("id").values("trace_id")[:1])


def calibrations(view: ProjectPage) -> Any:
    """The project's calibration runs (a calibration's scores are of dataset items, not traces)."""
    return (EvalRun.objects.visible_to(view.actor, "view").filter(project=view.project, schedule=None)
            .annotate(subject=FIRST_SUBJECT).filter(subject__startswith=services.SUBJECT_PREFIX)
            .select_related("evaluator_version__evaluator").order_by("-created_at", "-pk"))


class CalibrationPage(ProjectPage):
    """The project's calibrations, and the form that starts one (an evaluator on a labelled dataset)."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(form={}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        raw = request.POST.get("evaluator", "")
        evaluator = Evaluator.objects.visible_to(self.actor, "view").filter(
            project=self.project, pk=int(raw)).first() if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
        body = CalibrationRequestSerializer(data=optional(request.POST, "dataset", "concurrency"),
                                            context=self.parent_context())
        try:
            self.actor.require_team_manager(self.project.team_id)
            if evaluator is None:
                raise ValidationError({"evaluator": ["Choose an evaluator of this project."]})
            if not body.is_valid():
                raise ValidationError(drf_errors(body.errors))
            run = services.calibration_create(actor=self.actor, evaluator=evaluator,
                                              dataset=body.validated_data["dataset"],
                                              concurrency=body.validated_data["concurrency"])
        except (ValidationError, PermissionDenied, Conflict) as exc:
            return self.listing(form=request.POST.dict(), errors=errors_of(exc))
        messages.success(request, f"Calibration #{run.pk} queued: {run.total} labelled items to judge.")
        return redirect("web:calibration-report", org_slug=self.organization.slug, project_id=self.project.pk,
                        run_id=run.pk)

    def listing(self, *, form: dict[str, Any], errors: dict[str, list[str]]) -> HttpResponse:
        runs = list(calibrations(self)[:100])
        names = dict(Dataset.objects.visible_to(self.actor, "view").filter(project=self.project)
                     .values_list("pk", "name"))
        for run in runs:
            run.dataset_name = names.get(services.calibration_dataset_id(run.subject) or 0, "")  # type: ignore
        return self.page(
            "web/evaluations/calibration.html", http_status=400 if errors else 200, runs=runs, form=form,
            errors=errors, datasets=sorted(names.items(), key=lambda kv: kv[1]),
            evaluators=Evaluator.objects.visible_to(self.actor, "view").filter(project=self.project, archived=False)
            .order_by("name"))


class CalibrationReportPage(ProjectPage):
    """One calibration: accuracy and Cohen's kappa against the baseline, the confusion matrix, and where
    the judge disagreed."""

    parents = (PROJECT, Parent(EvalRun, "run_id", within="project", select_related=("evaluator_version__evaluator",)))

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        run = calibrations(self).filter(pk=self.parent(EvalRun).pk).first()
        if run is None:
            raise Http404  # an evaluation run, not a calibration
        dataset = Dataset.objects.visible_to(self.actor, "view").filter(
            project=self.project, pk=services.calibration_dataset_id(run.subject) or 0).first()
        report = services.calibration_report(run)
        labels = report["labels"]
        confusion = [{"expected": label, "cells": [{"n": n, "agree": i == j} for j, n in enumerate(row)]}
                     for i, (label, row) in enumerate(zip(labels, report["confusion_matrix"], strict=True))]
        return self.page("web/evaluations/calibration_report.html", run=run, dataset=dataset, report=report,
                         confusion=confusion, working=run.status in ("queued", "running"),
                         evaluator=run.evaluator_version.evaluator)
