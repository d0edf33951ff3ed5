"""The receiver's record of delivery ids seen: a replayed delivery is refused.

A small SQLite table (persistent across restarts, shared by receivers on one machine),
bounded to the newest ``limit`` ids. A delivery is claimed before its event is sent and
released when sending failed, so the provider's retry of a delivery that did not get
through is taken, and two copies arriving at once start one run.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

DEFAULT_LIMIT = 100_000


class DeliveryRecord:
    def __init__(self, path: Path, limit: int = DEFAULT_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False,
                                   isolation_level=None)
        try:
            path.chmod(0o600)
        except OSError:
            pass
        self._db.execute("CREATE TABLE IF NOT EXISTS deliveries (provider TEXT NOT NULL, "
                         "id TEXT NOT NULL, seen REAL NOT NULL, PRIMARY KEY (provider, id))")
        self._db.execute("CREATE INDEX IF NOT EXISTS deliveries_seen ON deliveries (seen)")
        self._inserts = 0

    def claim(self, provider: str, delivery: str) -> bool:
        """True when the id was not seen before (it is recorded now); False: a replay."""
        with self._lock:
            try:
                self._db.execute("INSERT INTO deliveries VALUES (?, ?, ?)",
                                 (provider, delivery, time.time()))
            except sqlite3.IntegrityError:
                return False
            self._inserts += 1
            if self._inserts % 1000 == 0:
                self._prune()
            return True

    def release(self, provider: str, delivery: str) -> None:
        """Forget a claimed id (its event could not be sent: a retry must be taken)."""
        with self._lock:
            self._db.execute("DELETE FROM deliveries WHERE provider = ? AND id = ?",
                             (provider, delivery))

    def _prune(self) -> None:
        self._db.execute("DELETE FROM deliveries WHERE seen < (SELECT seen FROM deliveries "
                         "ORDER BY seen DESC LIMIT 1 OFFSET ?)", (self.limit,))

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
