"""Gunicorn's access log without the secrets some URLs carry.

An invitation link (`/invitations/<token>/`) and a password-reset link (`/password/reset/<uid>/<token>/`)
hold their secret in the path: the database keeps only its hash and the views move it out of the URL at
once, but gunicorn's access line would write it whole, for whoever reads the logs to use first. This
logger class (`gunicorn --logger-class portal.gunicorn_logging.AccessLogger`, as docker-compose.yml, the
Dockerfile and `manage.py demo` start the web) writes those paths with the secret replaced by `***`, and
no query string at all (an SSO callback's `code`, any `?token=`), in the request line (`%(r)s`), the path
(`%(U)s`), the query (`%(q)s`) and the referer (`%(f)s`). The rest of gunicorn's format is unchanged;
ACCESS_FORMAT adds the request id (`X-Request-ID`, the portal's lines carry the same)."""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

ACCESS_FORMAT = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" %({x-request-id}o)s'
SECRET_PATHS = re.compile(r"(/invitations/|/password/reset/[^/?#]*/)(?!accept/|set-password/)[^/?#]+")


def redacted(url: str) -> str:
    """The path of `url` (a path, or a full URL such as a referer) with secrets masked, without its query."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    return SECRET_PATHS.sub(r"\1***", path)


class AccessLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        atoms["r"] = f"{environ.get('REQUEST_METHOD')} {redacted(environ.get('RAW_URI') or '')} " \
                     f"{environ.get('SERVER_PROTOCOL')}"
        atoms["U"] = redacted(environ.get("PATH_INFO") or "")
        atoms["q"] = ""
        atoms["f"] = redacted(environ.get("HTTP_REFERER", "-"))
        for name in ("{referer}i", "{x-original-uri}i", "{x-forwarded-uri}i"):
            if name in atoms:
                atoms[name] = redacted(str(atoms[name]))
        return atoms
