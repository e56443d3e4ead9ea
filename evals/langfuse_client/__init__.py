"""The one package that talks to Langfuse over HTTP, through the official SDK's typed API client.

The host is a tenant's: every request goes through the outbound URL policy
(`portal.outbound.PolicyTransport`), redirects are not followed, answers are bounded in size and in
pages, and errors carry the far side's status, not its answer (but for one short line of Langfuse's
reason for a refused body, from a server that answered the health check as Langfuse), so the client
cannot be used to read an internal service. Timeouts on every call; bounded retries with
exponential backoff on 429 and 5xx, honouring `Retry-After`, and never a blind retry of a POST that
is not idempotent; errors that retrying cannot fix are `LangfuseError(permanent=True)`. The API
generation is chosen from the server's version (`GET /api/public/health`): Langfuse v4 reads
observations through `/api/public/v2/observations`, scores through `/api/public/v3/scores` and
metrics through `/api/public/v2/metrics`; v3 servers read the older ones, and traces through
`/api/public/traces` (both serve it).

- `client`: `LangfuseClient`, one method per call the portal makes
- `base`: the SDK client and the policy around each call (retries, pages, the server's version)
- `transport`: the httpx client the SDK sends through (policy, size bound, no redirects)
- `errors`: `LangfuseError` and what each failure becomes"""

from evals.langfuse_client.base import MAX_PAGES, ServerInfo
from evals.langfuse_client.client import MAX_CONFIG_PAGES, LangfuseClient
from evals.langfuse_client.errors import RETRY_STATUSES, LangfuseError
from evals.langfuse_client.transport import MAX_RESPONSE_BYTES

__all__ = ["MAX_CONFIG_PAGES", "MAX_PAGES", "MAX_RESPONSE_BYTES", "RETRY_STATUSES", "LangfuseClient", "LangfuseError",
           "ServerInfo"]
