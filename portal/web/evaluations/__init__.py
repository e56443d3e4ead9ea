"""Evaluations: evaluators, schedules, runs and reports, datasets, benchmarks, calibration."""
