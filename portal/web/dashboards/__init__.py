"""Dashboards: the organization overview and the per-project dashboard (own usage and Langfuse metrics)."""
