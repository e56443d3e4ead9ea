"""Parsing a request body so that the gateway and LiteLLM read the same thing: strict UTF-8, no NaN,
bounded depth, integers LiteLLM's parser keeps exactly, no lone surrogates."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gateway.plugin.requests import errors
from gateway.plugin.requests.errors import MAX_DEPTH, Refusal, invalid, too_large


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class Unrepresentable(ValueError):
    """A JSON value Python's parser reads one way and LiteLLM's (orjson) another, or refuses."""


INT_LIMIT = 2 ** 63  # orjson reads larger integers as floats (losing digits), or refuses them


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 is inf to Python, an error to orjson
        raise Unrepresentable(f"The request body holds a number too large to represent ({text[:40]}): "
                              "numbers must be within about ±1.8e308.")
    return value


def _int(text: str) -> int:
    value = int(text) if len(text) <= 20 else None
    if value is None or not -INT_LIMIT <= value < INT_LIMIT:
        raise Unrepresentable(f"The request body holds an integer outside the 64-bit range ({text[:40]}"
                              f"{'...' if len(text) > 40 else ''}): integers must be between -2^63 and 2^63-1.")
    return value


DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_float, parse_int=_int)
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # cheap: most bodies have none
SURROGATE = re.compile("[\ud800-\udfff]")  # after decoding, a paired escape is one character: these are lone


def parse(raw: bytes, content_type: str) -> dict[str, Any]:
    """The request body as a JSON object, or a Refusal that says what is wrong with it."""
    if len(raw) > errors.MAX_BODY_BYTES:  # read at call time: tests and the guard share it
        raise too_large(len(raw))
    kind = media_type(content_type)
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise Refusal(400, f"The request body must be JSON, sent with 'Content-Type: application/json' "
                           f"(this request says '{kind[:60]}').", "unsupported_content_type")
    if not raw.strip():
        raise invalid("The request body is empty: send a JSON object with 'model' and the request's fields.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"The request body is not valid UTF-8 (byte {exc.start}).", code="invalid_encoding") from None
    try:
        body = DECODER.decode(text)
    except RecursionError:
        raise too_deep() from None
    except Unrepresentable as exc:
        raise invalid(str(exc), code="invalid_number") from None
    except ValueError as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise invalid(f"The request body is not valid JSON{where}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, not a JSON {json_type(body)}.")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and depth(body) > MAX_DEPTH:  # counting is much cheaper
        raise too_deep()
    if SURROGATE_ESCAPE.search(raw):
        lone_surrogates(body)
    return body


def lone_surrogates(body: dict[str, Any]) -> None:
    """Refuse an escaped unpaired surrogate (`"\\ud800"`) anywhere in the body: Python's parser
    accepts it, orjson (LiteLLM's) refuses it with its own words, and no provider can encode it."""
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for name, value in item.items():
                here = f"{where}.{name}" if where else name
                if SURROGATE.search(name):
                    raise surrogate(here)
                stack.append((value, here))
        elif isinstance(item, list):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(item))
        elif isinstance(item, str) and SURROGATE.search(item):
            raise surrogate(where)


def surrogate(where: str) -> Refusal:
    place = SURROGATE.sub("?", where)[:120]
    return invalid(f"The request body holds an invalid Unicode escape in '{place}' (an unpaired surrogate such "
                   "as \\ud800 without its pair).", code="invalid_encoding")


def too_deep() -> Refusal:
    return invalid(f"The request body is nested too deeply (at most {MAX_DEPTH} levels of arrays and objects).",
                   code="too_deeply_nested")


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def encode(body: dict[str, Any]) -> bytes:
    """The body LiteLLM will read."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise invalid("The request body holds an invalid Unicode escape (an unpaired surrogate).",
                      code="invalid_encoding") from None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)
