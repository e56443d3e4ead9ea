"""Settlements Redis could not take, kept on disk until it can.

A SQLite file under PORTAL_GATEWAY_SPOOL_DIR (default `var/gateway-spool`
under the working directory), one per Redis the proxy settles into, so that
what a proxy spooled survives its restart and is replayed into the right
Redis. Replaying twice is harmless: SETTLE runs once per request id.

If the file cannot be written (no such directory, disk full), settlements are
kept in memory, up to MEMORY_MAX; beyond that they are dropped, and each drop
is logged as an error."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("portal.gateway")
MEMORY_MAX = 100_000


def spool_path() -> Path:
    directory = Path(os.environ.get("PORTAL_GATEWAY_SPOOL_DIR") or Path.cwd() / "var" / "gateway-spool")
    from gateway.plugin import contract

    url = os.environ.get("PORTAL_GATEWAY_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    name = hashlib.sha256(f"{url}|{contract.BASE}".encode()).hexdigest()[:16]
    return directory / f"settlements-{name}.sqlite3"


class Spool:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._count: int | None = None
        self._memory: list[tuple[int, list[str], list[Any]]] = []
        self._next_memory_id = -1
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                path = self.path or spool_path()
                path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(path), timeout=5, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS settlement (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                           "keys TEXT NOT NULL, args TEXT NOT NULL)")
                self._db = db
                self.path = path
            except (OSError, sqlite3.Error) as exc:
                log.error("gateway: the settlement spool cannot be opened (%s: %s); settlements Redis cannot "
                          "take are kept in memory only", type(exc).__name__, exc)
                return None
        return self._db

    def pending(self) -> int:
        with self._lock:
            if self._count is None:
                db = self._open()
                self._count = db.execute("SELECT COUNT(*) FROM settlement").fetchone()[0] if db else 0
            return self._count + len(self._memory)

    def put(self, keys: list[str], args: list[Any]) -> None:
        self.pending()
        with self._lock:
            db = self._open()
            if db is not None:
                try:
                    db.execute("INSERT INTO settlement (keys, args) VALUES (?, ?)", (json.dumps(keys), json.dumps(args)))
                    self._count = (self._count or 0) + 1
                    return
                except sqlite3.Error as exc:
                    log.error("gateway: could not write the settlement spool (%s)", exc)
            if len(self._memory) >= MEMORY_MAX:
                log.error("gateway: settlement dropped: Redis cannot take it, the spool cannot be written and "
                          "%d are already kept in memory (request %s)", len(self._memory), args[0] if args else "?")
                return
            self._memory.append((self._next_memory_id, keys, args))
            self._next_memory_id -= 1

    def oldest(self, limit: int) -> list[tuple[int, list[str], list[Any]]]:
        with self._lock:
            rows = [(i, k, a) for i, k, a in self._memory[:limit]]
            db = self._open()
            if db is not None and len(rows) < limit:
                for row_id, keys, args in db.execute("SELECT id, keys, args FROM settlement ORDER BY id LIMIT ?",
                                                     (limit - len(rows),)):
                    rows.append((row_id, json.loads(keys), json.loads(args)))
                if not rows:  # another proxy on this spool replayed them
                    self._count = db.execute("SELECT COUNT(*) FROM settlement").fetchone()[0]
            return rows

    def done(self, row_id: int) -> None:
        with self._lock:
            if row_id < 0:
                self._memory = [m for m in self._memory if m[0] != row_id]
                return
            db = self._open()
            if db is not None:
                deleted = db.execute("DELETE FROM settlement WHERE id = ?", (row_id,)).rowcount
                self._count = max(0, (self._count or 0) - deleted)
