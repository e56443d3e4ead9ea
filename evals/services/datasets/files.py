"""Parsing uploaded JSONL and CSV files into items. Every bad line is named (up to MAX_ERRORS), and one
bad line and nothing is imported. The readers (`decode`, `parse_jsonl`, `parse_csv`, `line_errors`,
`duplicate_ids`) serve the label imports of calibration too."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError

from evals.services.datasets.limits import MAX_ERRORS, check_line_count, check_row_count, check_upload_size
from evals.services.datasets.values import ItemRow, id_problem, item_problems

IMPORT_FIELDS = frozenset({"input", "expected_output", "metadata", "id"})
Errors = list[tuple[int, str]]  # (line number, what is wrong there)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[:exc.start].count(b"\n") + 1
        raise ValidationError({"file": [f"line {line}: the file is not UTF-8 text."]}) from None


def parse_jsonl(text: str) -> tuple[list[tuple[int, dict[str, Any]]], Errors]:
    """(line number, object) per non-blank line, and what is wrong with the others."""
    records, errors = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            errors.append((number, f"not valid JSON ({getattr(exc, 'msg', None) or exc})"))
            continue
        if not isinstance(value, dict):
            errors.append((number, "not a JSON object"))
            continue
        records.append((number, value))
    return records, errors


def parse_csv(text: str, *, columns: frozenset[str], required: Iterable[str]
              ) -> tuple[list[tuple[int, dict[str, str]]], Errors]:
    """(line number, {column: text}) per data row of a CSV file with a header."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, dict[str, str]]] = []
    errors: Errors = []
    header: list[str] | None = None
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append((start, str(exc)))
            break
        line, start = start, reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [c.strip() for c in row]
            unknown = sorted(set(header) - columns)
            missing = [c for c in required if c not in header]
            if unknown or missing or len(set(header)) != len(header):
                return [], [(line, f"the header must name the columns {', '.join(sorted(columns))} "
                                   f"(required: {', '.join(required)}), each once; found {', '.join(header)[:300]}")]
            continue
        if len(row) != len(header):
            errors.append((line, f"{len(row)} fields, but the header has {len(header)}"))
            continue
        records.append((line, dict(zip(header, row, strict=True))))
    if header is None:
        errors.insert(0, (1, "the file is empty"))
    return records, errors


def rows_from_jsonl(records: list[tuple[int, dict[str, Any]]]) -> tuple[list[tuple[int, ItemRow]], Errors]:
    rows, errors = [], []
    for line, record in records:
        problems = [f"unknown field {k!r}" for k in sorted(set(record) - IMPORT_FIELDS)][:5]
        metadata = record.get("metadata")
        metadata = {} if metadata is None else metadata
        problems += item_problems(record.get("input"), record.get("expected_output"), metadata)
        external_id = None
        if record.get("id") is not None:
            problem = id_problem(record["id"])
            if problem:
                problems.append(problem)
            else:
                external_id = str(record["id"]).strip()
        if problems:
            errors.append((line, "; ".join(problems)))
            continue
        rows.append((line, ItemRow(record["input"], record.get("expected_output"), metadata, external_id)))
    return rows, errors


def rows_from_csv(records: list[tuple[int, dict[str, str]]]) -> tuple[list[tuple[int, ItemRow]], Errors]:
    """CSV cells are text: `input` and `expected_output` are taken as strings
    (an empty expected output is none); `metadata` is a JSON object."""
    rows, errors = [], []
    for line, record in records:
        problems = []
        metadata: Any = {}
        if (record.get("metadata") or "").strip():
            try:
                metadata = json.loads(record["metadata"], parse_constant=_reject_constant)
            except (ValueError, RecursionError):
                metadata = None
        text_input = record.get("input") or None
        expected = record.get("expected_output") or None
        problems += item_problems(text_input, expected, metadata)
        external_id = (record.get("id") or "").strip() or None
        if external_id is not None and (problem := id_problem(external_id)):
            problems.append(problem)
        if problems:
            errors.append((line, "; ".join(problems)))
            continue
        rows.append((line, ItemRow(text_input, expected, metadata, external_id)))
    return rows, errors


def line_errors(errors: Errors) -> list[str]:
    """Every bad line, in file order (at most MAX_ERRORS of them)."""
    messages = [f"line {line}: {message}." for line, message in sorted(errors)]
    more = len(messages) - MAX_ERRORS
    return messages[:MAX_ERRORS] + ([f"... and {more} more bad lines."] if more > 0 else [])


def duplicate_ids(rows: list[tuple[int, str | None]], what: str = "id") -> Errors:
    first: dict[str, int] = {}
    errors = []
    for line, key in rows:
        if key is None:
            continue
        if key in first:
            errors.append((line, f"{what} {key!r} is already on line {first[key]}"))
        else:
            first[key] = line
    return errors


def parse_items(content: bytes, fmt: str) -> list[ItemRow]:
    """The items of an uploaded file, or a ValidationError naming every bad line."""
    check_upload_size(content)
    text = decode(content)
    if fmt != "csv":
        check_line_count(text, "items")
    if fmt == "csv":
        cells, errors = parse_csv(text, columns=IMPORT_FIELDS, required=["input"])
        count = len(cells)
        rows, row_errors = rows_from_csv(cells)
    else:
        objects, errors = parse_jsonl(text)
        count = len(objects)
        rows, row_errors = rows_from_jsonl(objects)
    check_row_count(count + len(errors), "items")
    errors += row_errors + duplicate_ids([(line, row.external_id) for line, row in rows])
    if errors:
        raise ValidationError({"file": line_errors(errors)})
    if not rows:
        raise ValidationError({"file": ["The file has no items."]})
    return [row for _, row in rows]
