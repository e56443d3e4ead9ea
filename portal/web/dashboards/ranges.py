"""The dashboards' time range: 7, 30 or 90 days up to today (UTC), or custom dates, from the query string."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms

PRESETS = (7, 30, 90)
DEFAULT = 30
MAX_DAYS = 366


class RangeForm(forms.Form):
    range = forms.ChoiceField(choices=[(str(d), f"{d} days") for d in PRESETS] + [("custom", "Custom")],
                              required=False)
    start = forms.DateField(required=False, label="From")
    end = forms.DateField(required=False, label="To")

    def __init__(self, *args: Any, today: dt.date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.today = today

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        choice = data.get("range") or ("custom" if data.get("start") or data.get("end") else str(DEFAULT))
        data["range"] = choice
        if choice != "custom":
            days = int(choice)
            data["start"], data["end"] = self.today - dt.timedelta(days=days - 1), self.today
            return data
        start, end = data.get("start"), data.get("end")
        if self.errors:
            return data
        if start is None:
            self.add_error("start", "Enter the first day.")
        if end is None:
            self.add_error("end", "Enter the last day.")
        if start and end:
            if end < start:
                self.add_error("end", "The last day must not be before the first.")
            elif end > self.today:
                self.add_error("end", "The last day cannot be in the future.")
            elif (end - start).days + 1 > MAX_DAYS:
                self.add_error("start", f"At most {MAX_DAYS} days.")
        return data


def chosen_range(query: Any, today: dt.date) -> tuple[RangeForm, dt.date, dt.date]:
    """The form (bound, with its errors), and the window: the chosen one, or the default when invalid."""
    form = RangeForm(query, today=today)
    if form.is_valid():
        return form, form.cleaned_data["start"], form.cleaned_data["end"]
    return form, today - dt.timedelta(days=DEFAULT - 1), today
