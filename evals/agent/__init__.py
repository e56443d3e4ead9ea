"""The evaluation agent: it investigates one project's traces, scores and usage with
read-only tools scoped by the portal (tools.py), in a bounded tool-calling loop run
as a Celery job through the gateway (loop.py), keeps every step, writes a report
whose findings are kept only when their evidence checks out (evidence.py), and
answers follow-up questions in a conversation kept with the report."""
