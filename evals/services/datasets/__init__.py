"""Writes to datasets and their items: create, update and delete; imports of JSONL and CSV files; items
built from a project's Langfuse traces; pushes to and pulls from Langfuse datasets.

Every item has a stable `external_id`, which is also its id in Langfuse, so an import, a build, a push
or a pull that runs again updates items instead of adding them. Bulk writes check everything first and
write in one transaction: one bad line and nothing is imported. Builds and pushes of more than
`INLINE_ITEMS` items run on a worker; their outcome goes to the audit log.

- `writes`: datasets and items one at a time, and file imports
- `traces`: building items from Langfuse traces (`BuildSpec`)
- `sync`: pushing to and pulling from Langfuse datasets
- `background`: the builds and pushes run on a worker
- `files`: parsing JSONL and CSV uploads, every bad line named
- `values`: what an item may hold (`ItemRow`, the value checks)
- `store`: the bulk upsert, `WriteResult`, the checks every write shares
- `limits`: how large datasets, items and uploads may be

The names below are the ones the API, the tasks and the other services use."""

from evals.services.datasets.background import build_in_background, push_in_background
from evals.services.datasets.files import Errors, decode, duplicate_ids, line_errors, parse_csv, parse_jsonl
from evals.services.datasets.limits import (
    INLINE_ITEMS,
    MAX_BUILD_ITEMS,
    MAX_DATASET_ITEMS,
    MAX_ERRORS,
    MAX_ITEM_CHARS,
    check_line_count,
    check_row_count,
    check_upload_size,
    max_upload_bytes,
    max_upload_rows,
    too_large_message,
)
from evals.services.datasets.store import WriteResult
from evals.services.datasets.sync import dataset_pull, dataset_push
from evals.services.datasets.traces import BuildSpec, dataset_build
from evals.services.datasets.values import ItemRow, text_problem
from evals.services.datasets.writes import (
    dataset_create,
    dataset_delete,
    dataset_import,
    dataset_update,
    item_create,
    item_delete,
    item_update,
)

__all__ = [
    "INLINE_ITEMS", "MAX_BUILD_ITEMS", "MAX_DATASET_ITEMS", "MAX_ERRORS", "MAX_ITEM_CHARS", "BuildSpec", "Errors",
    "ItemRow", "WriteResult", "build_in_background", "check_line_count", "check_row_count", "check_upload_size",
    "dataset_build", "dataset_create", "dataset_delete", "dataset_import", "dataset_pull", "dataset_push",
    "dataset_update", "decode", "duplicate_ids", "item_create", "item_delete", "item_update", "line_errors",
    "max_upload_bytes", "max_upload_rows", "parse_csv", "parse_jsonl", "push_in_background", "text_problem",
    "too_large_message",
]
