"""Field checks: each takes a value and the name of its field, and raises a 400 that names the field."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gateway.plugin.requests.errors import Refusal, invalid
from gateway.plugin.requests.parsing import json_type

Check = Callable[[Any, str], None]


def wrong(param: str, expected: str, value: Any) -> Refusal:
    return invalid(f"'{param}' must be {expected}, not {json_type(value)}.", param)


def string(max_length: int = 100_000_000, *, empty: bool = True) -> Check:
    def check(value: Any, param: str) -> None:
        if not isinstance(value, str):
            raise wrong(param, "a string", value)
        if not empty and not value.strip():
            raise invalid(f"'{param}' must not be empty.", param)
        if len(value) > max_length:
            raise invalid(f"'{param}' is too long (at most {max_length} characters).", param)
    return check


def boolean(value: Any, param: str) -> None:
    if not isinstance(value, bool):
        raise wrong(param, "true or false", value)


def integer(low: int = 0, high: int | None = None) -> Check:
    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong(param, "an integer", value)
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise invalid(f"'{param}' must be {bounds} (got {value}).", param)
    return check


def number(low: float, high: float) -> Check:
    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong(param, "a number", value)
        if not low <= value <= high:
            raise invalid(f"'{param}' must be between {low:g} and {high:g} (got {value:g}).", param)
    return check


def obj(value: Any, param: str) -> None:
    if not isinstance(value, dict):
        raise wrong(param, "an object", value)


def array(value: Any, param: str) -> None:
    if not isinstance(value, list):
        raise wrong(param, "an array", value)


def objects(value: Any, param: str) -> None:
    array(value, param)
    for i, item in enumerate(value):
        obj(item, f"{param}[{i}]")


def any_of(*checks: Check, expected: str) -> Check:
    def check(value: Any, param: str) -> None:
        for candidate in checks:
            try:
                candidate(value, param)
                return
            except Refusal:
                continue
        raise wrong(param, expected, value)
    return check


def strings(value: Any, param: str) -> None:
    array(value, param)
    for i, item in enumerate(value):
        string()(item, f"{param}[{i}]")


def stop(value: Any, param: str) -> None:
    if value is None:
        return
    any_of(string(), strings, expected="a string or an array of strings")(value, param)
    if isinstance(value, list) and len(value) > 16:
        raise invalid(f"'{param}' may hold at most 16 sequences.", param)


def nullable(check: Check) -> Check:
    def inner(value: Any, param: str) -> None:
        if value is not None:
            check(value, param)
    return inner


def anything(value: Any, param: str) -> None:
    """Any JSON value (already bounded in size and depth); the provider checks it."""


def one_of(*choices: str) -> Check:
    def check(value: Any, param: str) -> None:
        if value not in choices:
            raise invalid(f"'{param}' must be one of {', '.join(choices)}.", param)
    return check


def logit_bias(value: Any, param: str) -> None:
    obj(value, param)
    for token, bias in value.items():
        number(-100, 100)(bias, f"{param}.{token}")


def tool_choice(value: Any, param: str) -> None:
    any_of(string(64), obj, expected="a string ('auto', 'none', 'required') or an object")(value, param)
