"""Production settings: secure cookies, HTTPS redirect and HSTS behind a TLS proxy, a Content Security
Policy that allows no inline script or style (and templates that need none), and static files from
`collectstatic`'s manifest, hashed and cached for good, served by whitenoise in a real gunicorn."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client

from tests.e2e.procs import PYTHON, ROOT, free_port, wait_for

SHOW = ("import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k in ("
        "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', "
        "'SECURE_PROXY_SSL_HEADER', 'CSRF_COOKIE_HTTPONLY')}))")


def settings_of(**env: str) -> dict[str, Any]:
    result = subprocess.run([PYTHON, "manage.py", "shell", "--no-imports", "-c", SHOW], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PORTAL_ENV_FILE": "none", **env})
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_behind_a_tls_proxy_cookies_are_secure_and_https_is_enforced() -> None:
    behind = settings_of(BEHIND_TLS_PROXY="true")
    assert behind == {"SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True, "SECURE_SSL_REDIRECT": True,
                      "SECURE_HSTS_SECONDS": 31_536_000, "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
                      "CSRF_COOKIE_HTTPONLY": True}
    plain = settings_of(BEHIND_TLS_PROXY="false")  # the demo on http://127.0.0.1: cookies must work over HTTP
    assert plain["SESSION_COOKIE_SECURE"] is False and plain["SECURE_SSL_REDIRECT"] is False
    assert plain["SECURE_HSTS_SECONDS"] == 0
    assert settings_of(BEHIND_TLS_PROXY="true", SECURE_HSTS_SECONDS="3600")["SECURE_HSTS_SECONDS"] == 3600


def test_hsts_and_secure_cookies_on_https_through_the_proxy(db: Any, settings: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.CSRF_COOKIE_SECURE = settings.SESSION_COOKIE_SECURE = True
    response = Client().get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"] == "max-age=31536000"
    cookie = response.cookies["csrftoken"]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"
    assert "Strict-Transport-Security" not in Client().get("/login/")  # plain HTTP: never


def test_every_page_has_a_strict_content_security_policy(db: Any) -> None:
    for path in ("/login/", "/api/v1/docs/", "/no-such-page/"):
        policy = Client().get(path)["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'", policy
        assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
        assert "unsafe" not in policy


def test_the_api_docs_start_script_is_a_file_not_inline(db: Any) -> None:
    page = Client().get("/api/v1/docs/").content.decode()
    assert re.search(r'<script src="[^"]*/api/v1/docs/\?script=', page)
    assert not re.search(r"<script>", page)
    script = Client().get("/api/v1/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


INLINE = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>|<style\b|\sstyle=\"|\son[a-z]+=\"",
                    re.I)


def test_no_template_has_inline_script_style_or_handlers() -> None:
    """The policy refuses them in the browser (tests/web checks every page it visits); this names the file."""
    found = []
    for directory in (ROOT / "portal" / "templates", ROOT / "evals" / "templates", ROOT / "gateway" / "templates"):
        for template in directory.rglob("*.html") if directory.is_dir() else []:
            for number, line in enumerate(template.read_text().splitlines(), 1):
                if INLINE.search(line):
                    found.append(f"{template.relative_to(ROOT)}:{number}")
    assert not found, found


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("static")
    result = subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "PORTAL_ENV_FILE": "none", "STATIC_MANIFEST": "true",
                                 "STATIC_ROOT": str(root)})
    assert result.returncode == 0, result.stderr[-2000:]
    return root


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_collectstatic_and_the_manifest_in_production(collected: Path, tmp_path: Path) -> None:
    manifest = json.loads((collected / "staticfiles.json").read_text())["paths"]
    assert re.fullmatch(r"portal/app\.[0-9a-f]{12}\.js", manifest["portal/app.js"])
    port = free_port()
    env = {**os.environ, "PORTAL_ENV_FILE": "none", "STATIC_MANIFEST": "true", "STATIC_ROOT": str(collected)}
    with open(tmp_path / "web.log", "wb") as log:
        web = subprocess.Popen([PYTHON, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/healthz"), 60, "gunicorn", web)
        page = httpx.get(f"{base}/login/", timeout=60).text
        hashed = f"/static/{manifest['portal/app.js']}"
        assert hashed in page  # the page links the hashed name
        script = httpx.get(f"{base}{hashed}", headers={"Accept-Encoding": "gzip"}, timeout=60)
        assert script.status_code == 200 and "data-pct" in script.text
        assert "immutable" in script.headers["Cache-Control"] and "max-age=315360000" in script.headers["Cache-Control"]
        assert script.headers.get("Content-Encoding") == "gzip"
    finally:
        web.terminate()
        web.wait(timeout=20)
