"""Benchmarks: a dataset run through each of a set of routes, scored by
evaluators (the judge) and deterministic metrics, summarized as a matrix
per route, recorded in Langfuse as dataset runs, compared with the previous
run, exported as CSV.

Calls go through the gateway with the project's service key, tagged
`portal-benchmark` (never evaluated), so they are budgeted, rate-limited (the
client honours 429 + Retry-After) and visible in usage. A failed call is an
error in the matrix; a budget refusal stops the run cleanly as `partial`.

- `definitions`: writing benchmarks (create, update, delete; validation)
- `execution`: starting a run and executing it on the run lifecycle
- `attempts`: one item through one route, scored (the pool's work)
- `recording`: the run in Langfuse (dataset, dataset runs, scores)
- `matrix`: the results matrix per route
- `comparison`: against the previous run, the regression `RULES`
- `export`: the results as CSV

The names below are the ones the API, the tasks and the tests use."""

from evals.services.benchmarks.comparison import RULES, compare
from evals.services.benchmarks.definitions import benchmark_create, benchmark_delete, benchmark_update
from evals.services.benchmarks.execution import (
    MAX_ACTIVE_RUNS,
    BenchmarkExecution,
    benchmark_run_create,
    benchmark_run_execute,
)
from evals.services.benchmarks.export import results_csv
from evals.services.benchmarks.recording import push_dataset

__all__ = ["MAX_ACTIVE_RUNS", "RULES", "BenchmarkExecution", "benchmark_create", "benchmark_delete",
           "benchmark_run_create", "benchmark_run_execute", "benchmark_update", "compare", "push_dataset",
           "results_csv"]
