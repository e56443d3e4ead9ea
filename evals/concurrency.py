"""Bounded concurrency for the evaluation engines (runs, calibrations,
benchmarks): the slow part (HTTP to the gateway) runs on a thread pool, at
most `limit` at a time; each outcome is handled in the calling thread, which
alone touches the database and Langfuse."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
C = TypeVar("C")


class Bounded(Generic[T, C]):
    """Use as a context manager: leaving it waits for (and handles) what is
    still in flight, also when the loop that submitted work stops early."""

    def __init__(self, limit: int, on_done: Callable[[C, Future[T]], None], name: str) -> None:
        self.limit, self.on_done = max(1, limit), on_done
        self.pool = ThreadPoolExecutor(max_workers=self.limit, thread_name_prefix=name)
        self.in_flight: dict[Future[T], C] = {}

    def __len__(self) -> int:
        return len(self.in_flight)

    def submit(self, context: C, fn: Callable[..., T], *args: Any) -> None:
        """Start `fn(*args)`; return once fewer than `limit` are in flight."""
        self.in_flight[self.pool.submit(fn, *args)] = context
        self.drain(self.limit - 1)

    def drain(self, below: int = 0) -> None:
        while len(self.in_flight) > below:
            done, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                self.on_done(self.in_flight.pop(future), future)

    def __enter__(self) -> Bounded[T, C]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.drain(0)
        finally:
            self.pool.shutdown(wait=True)
