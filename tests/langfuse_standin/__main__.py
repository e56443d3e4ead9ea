"""Run the stand-in as a process: ``python -m tests.langfuse_standin --port 3000 --version 4``.

Prints ``listening on <url>`` once it accepts connections, serves until SIGTERM or
Ctrl-C. ``--project ID:PUBLIC_KEY:SECRET_KEY`` (repeatable) adds projects;
``--org-key PUBLIC:SECRET[:entitled]`` configures the organisation key.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from .server import LangfuseStandin


def _project(value: str) -> tuple[str, str, str]:
    parts = value.split(":")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError("expected ID:PUBLIC_KEY:SECRET_KEY")
    return parts[0], parts[1], parts[2]


def _org_key(value: str) -> tuple[str, str, bool]:
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError("expected PUBLIC_KEY:SECRET_KEY[:entitled]")
    return parts[0], parts[1], len(parts) == 3 and parts[2] in ("entitled", "true", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.langfuse_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--version", type=int, choices=(3, 4), default=4, help="Langfuse API major version")
    parser.add_argument("--project", type=_project, action="append", default=[], metavar="ID:PK:SK")
    parser.add_argument("--org-key", type=_org_key, metavar="PK:SK[:entitled]")
    parser.add_argument("--no-deprecated", action="store_true", help="404 for operations marked deprecated")
    args = parser.parse_args(argv)

    server = LangfuseStandin(version=args.version, host=args.host, port=args.port,
                             serve_deprecated=not args.no_deprecated)
    for project_id, public_key, secret_key in args.project:
        server.add_project(project_id, project_id, public_key, secret_key)
    if args.org_key:
        server.set_org_key(*args.org_key)

    def shutdown(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    server.start()
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if server.violations:
            print("spec violations:", *server.violations, sep="\n  ", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
