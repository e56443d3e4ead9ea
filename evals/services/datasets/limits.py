"""How large datasets, items and uploads may be, and the checks of an upload's size and row count
(settings.EVALS_MAX_UPLOAD_BYTES, settings.EVALS_MAX_UPLOAD_ROWS)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

MAX_ITEM_CHARS = 100_000  # an item's input, expected output and metadata, as JSON
MAX_DATASET_ITEMS = 20_000
MAX_BUILD_ITEMS = 10_000
INLINE_ITEMS = 500  # builds and pushes up to this size answer in the request; larger ones run on a worker
SCAN_PER_ITEM = 20  # a build reads at most this many traces per item it may add (metadata filters are local)
MAX_ERRORS = 1000


def max_upload_bytes() -> int:
    """settings.EVALS_MAX_UPLOAD_BYTES: the largest file an import takes."""
    return int(settings.EVALS_MAX_UPLOAD_BYTES)


def max_upload_rows() -> int:
    """settings.EVALS_MAX_UPLOAD_ROWS: the most rows (lines, array elements) an import takes."""
    return int(settings.EVALS_MAX_UPLOAD_ROWS)


def too_large_message() -> str:
    limit = max_upload_bytes()
    size = f"{limit / (1024 * 1024):g} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return f"The file is larger than {size}, the limit of an upload; nothing was imported."


def check_upload_size(content: bytes) -> None:
    if len(content) > max_upload_bytes():
        raise ValidationError({"file": [too_large_message()]})


def check_row_count(rows: int, what: str) -> None:
    if rows > max_upload_rows():
        raise ValidationError({"file": [f"The file has more than {max_upload_rows()} {what}, the limit of an "
                                        "upload; nothing was imported."]})


def check_line_count(text: str, what: str) -> None:
    """Before parsing: a file of more non-blank lines than rows allowed is refused unparsed."""
    lines = text.count("\n") + 1
    if lines > max_upload_rows() and sum(1 for line in text.split("\n") if line.strip()) > max_upload_rows():
        check_row_count(max_upload_rows() + 1, what)
