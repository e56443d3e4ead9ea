"""Filtering for list endpoints."""

from __future__ import annotations

from collections.abc import Mapping

import django_filters
from django.db import models
from django_filters.filterset import FILTER_FOR_DBFIELD_DEFAULTS
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions


class IdFilterSet(django_filters.FilterSet):
    """Foreign keys filter by id without checking that the id exists: such a
    check runs over every tenant's rows, and its 400 would tell an outsider
    that another tenant's object exists. The queryset is already scoped."""

    FILTER_DEFAULTS = {
        **FILTER_FOR_DBFIELD_DEFAULTS,
        models.ForeignKey: {"filter_class": django_filters.NumberFilter},
        models.OneToOneField: {"filter_class": django_filters.NumberFilter},
    }


class FilterBackend(DjangoFilterBackend):
    filterset_base = IdFilterSet


def query_int(params: Mapping[str, str], name: str, message: str) -> int | None:
    """An optional whole-number query parameter: ASCII digits only (`"²".isdigit()` is true and `int("²")`
    fails) and within the database's integer range, else a 400 naming the parameter."""
    value = params.get(name, "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) < 10):
        raise exceptions.ValidationError({name: [message]})
    return int(value)
