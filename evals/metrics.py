"""Deterministic metrics of a benchmark: checks of a route's answer that need
no judge. Each returns True (passes), False (fails) or None (does not apply,
e.g. exact match on an item without an expected output; it then neither
passes nor fails the item).

Specs, as stored in `Benchmark.metrics`:

- `{"type": "exact_match"}`: the answer equals the item's expected output.
  A text reference is compared after stripping surrounding whitespace; a
  JSON reference (object, list, number, boolean) must equal the answer
  parsed as JSON, so formatting does not matter.
- `{"type": "contains", "value": "..."}`: the answer contains the value; without
  a value, it contains the expected output (as text, JSON written compactly).
- `{"type": "regex", "pattern": "..."}`: the pattern matches somewhere in the answer.
  Patterns are RE2 expressions (Python's syntax without backreferences and
  lookaround): a tenant's pattern runs on shared workers, and RE2 matches in
  time linear in the answer, so no pattern (`(a+)+$` and the like) can stall one.
- `{"type": "json_valid"}`: the whole answer (surrounding whitespace aside) is JSON.

Each may add `"ignore_case": true` (not `json_valid`) and a `"name"` (default:
the type); names must be distinct within a benchmark."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

TYPES = ("exact_match", "contains", "regex", "json_valid")
OPTIONS = {"exact_match": {"ignore_case"}, "contains": {"value", "ignore_case"},
           "regex": {"pattern", "ignore_case"}, "json_valid": set()}
NAME = re.compile(r"^[A-Za-z0-9_ .()-]{1,35}$")
MAX_METRICS = 20
MAX_PATTERN = 500
MAX_VALUE = 2000
MAX_ANSWER_CHARS = 100_000  # what a pattern is matched against: with RE2, bounds the time a match takes
PATTERN_MEMORY = 8 << 20  # bytes RE2 may use for a compiled pattern (its default): `a{1000}{1000}` is refused


class MetricSpecError(ValueError):
    """Specs that cannot be used; `messages` says why, one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    value: str | None = None
    pattern: str | None = None
    ignore_case: bool = False

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.value is not None:
            out["value"] = self.value
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.ignore_case:
            out["ignore_case"] = True
        return out

    def check(self, answer: str, expected: Any) -> bool | None:
        return CHECKS[self.type](self, answer, expected)


def _one(index: int, raw: Any) -> tuple[Metric | None, list[str]]:
    where = f"Metric {index + 1}"
    if not isinstance(raw, dict):
        return None, [f"{where}: expected an object like {{\"type\": \"exact_match\"}}."]
    kind = raw.get("type")
    if kind not in TYPES:
        return None, [f"{where}: 'type' must be one of {', '.join(TYPES)}."]
    where = f"{where} ({kind})"
    problems = []
    unknown = set(raw) - OPTIONS[kind] - {"type", "name"}
    if unknown:
        problems.append(f"{where}: unknown option(s) {', '.join(sorted(map(str, unknown)))}.")
    name = raw.get("name", kind)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append(f"{where}: 'name' must be 1-35 letters, digits, spaces, _ . ( ) -.")
    ignore_case = raw.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        problems.append(f"{where}: 'ignore_case' must be true or false.")
    value = raw.get("value")
    if value is not None and (not isinstance(value, str) or not value or len(value) > MAX_VALUE):
        problems.append(f"{where}: 'value' must be a non-empty text of up to {MAX_VALUE} characters.")
    pattern = raw.get("pattern")
    if kind == "regex":
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
            problems.append(f"{where}: 'pattern' must be a non-empty regular expression of up to "
                            f"{MAX_PATTERN} characters.")
        else:
            try:
                compiled(pattern, ignore_case is True)
            except re2.error as exc:
                problems.append(f"{where}: 'pattern' does not compile: {_reason(exc)}.{_unsupported(pattern)}")
    if problems:
        return None, problems
    return Metric(name=str(name), type=kind, value=value, pattern=pattern, ignore_case=ignore_case), []


def parse_specs(specs: Any) -> list[Metric]:
    """The metrics of a list of specs, or MetricSpecError listing every problem."""
    if not isinstance(specs, list):
        raise MetricSpecError(["Expected a list of metric specs."])
    if len(specs) > MAX_METRICS:
        raise MetricSpecError([f"At most {MAX_METRICS} metrics."])
    metrics, problems = [], []
    for index, raw in enumerate(specs):
        metric, errors = _one(index, raw)
        problems += errors
        if metric is not None:
            metrics.append(metric)
    names = [m.name for m in metrics]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"Two metrics are named '{name}': give each a distinct 'name'.")
    if problems:
        raise MetricSpecError(problems)
    return metrics


# Checks ------------------------------------------------------------------


def reference_text(expected: Any) -> str | None:
    if expected is None:
        return None
    return expected if isinstance(expected, str) else json.dumps(expected, ensure_ascii=False,
                                                                  separators=(",", ":"))


def parse_json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text.strip())
    except ValueError:
        return False, None


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1 and key order does not matter."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _fold(text: str, metric: Metric) -> str:
    return text.casefold() if metric.ignore_case else text


def exact_match(metric: Metric, answer: str, expected: Any) -> bool | None:
    if expected is None:
        return None
    if isinstance(expected, str):
        return _fold(answer.strip(), metric) == _fold(expected.strip(), metric)
    ok, parsed = parse_json(answer)
    if metric.ignore_case and ok:
        parsed, expected = _fold_json(parsed), _fold_json(expected)
    return ok and same_json(parsed, expected)


def _fold_json(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, list):
        return [_fold_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _fold_json(v) for k, v in value.items()}
    return value


def contains(metric: Metric, answer: str, expected: Any) -> bool | None:
    needle = metric.value if metric.value is not None else reference_text(expected)
    if needle is None:
        return None
    return _fold(needle, metric) in _fold(answer, metric)


@lru_cache(maxsize=256)
def compiled(pattern: str, ignore_case: bool) -> Any:
    """The RE2 program of a pattern (re2.error if RE2 refuses it)."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False  # the refusal is the user's answer, not a log line
    options.max_mem = PATTERN_MEMORY
    return re2.compile(pattern, options=options)


def _unsupported(pattern: str) -> str:
    """Why a pattern Python would take is refused (compiling, unlike matching, cannot stall)."""
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return ""
    return " Patterns run with RE2, which has no backreferences and no lookaround, so that no pattern can stall."


def _reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    return (reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason))[:200]


def regex(metric: Metric, answer: str, expected: Any) -> bool | None:
    assert metric.pattern is not None
    try:
        program = compiled(metric.pattern, metric.ignore_case)
    except re2.error:
        return None  # stored before patterns were checked with RE2: it does not apply
    return program.search(answer[:MAX_ANSWER_CHARS]) is not None


def json_valid(metric: Metric, answer: str, expected: Any) -> bool | None:
    return bool(answer.strip()) and parse_json(answer)[0]


CHECKS = {"exact_match": exact_match, "contains": contains, "regex": regex, "json_valid": json_valid}


def evaluate(metrics: list[Metric], answer: str, expected: Any) -> dict[str, bool | None]:
    return {m.name: m.check(answer, expected) for m in metrics}
