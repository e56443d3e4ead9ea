"""A soft budget sends one alert per budget period: an email and a webhook."""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import MAIL_DIR, Stack
from tests.e2e.helpers import chat, issue_key, until
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class Hooks:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                hooks.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"


def test_soft_budget_alerts_once_by_email_and_webhook(stack: Stack, acme: Tenant) -> None:
    shutil.rmtree(MAIL_DIR, ignore_errors=True)
    hooks = Hooks()
    response = acme.client("owner").patch(acme.url(), {"alert_webhook_url": hooks.url,
                                                       "alert_emails": "finops@acme.test"}, format="json")
    assert response.status_code == 200, response.content
    key = issue_key(acme, soft_budget="0.0001", budget_period="daily")  # about 8 mock requests
    for i in range(14):
        chat(stack.gateways[i % 2].url, key["key"])
    until(lambda: len(hooks.received) >= 1, 10, 0.1)
    time.sleep(1.5)
    assert len(hooks.received) == 1
    alert = hooks.received[0]
    assert alert["kind"] == "soft_budget" and alert["scope"] == "key" and alert["name"].startswith("e2e key")
    assert alert["soft_budget"] == 0.0001 and alert["spend"] >= 0.0001 and alert["organization"] == "acme"
    mails = [p.read_text() for p in MAIL_DIR.glob("*.log")]
    assert len(mails) == 1 and "finops@acme.test" in mails[0] and "passed its soft budget" in mails[0]
    hooks.server.shutdown()
