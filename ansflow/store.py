"""The small state store: build numbers per pipeline and a record of runs (SQLAlchemy).

SQLite under ANSFLOW_HOME by default; any SQLAlchemy URL via ANSFLOW_DATABASE_URL (e.g.
PostgreSQL shared by several machines). Build numbers come from one atomic
INSERT .. ON CONFLICT .. RETURNING, so concurrent runs never share a number.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine

metadata = MetaData()
build_numbers = Table(
    "ansflow_build_numbers", metadata,
    Column("pipeline", String(255), primary_key=True),
    Column("last", Integer, nullable=False),
)
runs = Table(
    "ansflow_runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("pipeline", String(255), nullable=False, index=True),
    Column("build_number", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True)),
    Column("summary", Text),
)


def ansflow_home() -> Path:
    return Path(os.environ.get("ANSFLOW_HOME") or Path.home() / ".ansflow")


def database_url() -> str:
    url = os.environ.get("ANSFLOW_DATABASE_URL")
    if url:
        return url
    home = ansflow_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'ansflow.db'}"


class Store:
    """Opens its own engine; create one per use (nothing is cached at module level)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or database_url()
        kwargs = {"connect_args": {"timeout": 60}} if self.url.startswith("sqlite") else {}
        self.engine: Engine = create_engine(self.url, future=True, **kwargs)
        if self.url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine, checkfirst=True)

    def next_build_number(self, pipeline: str) -> int:
        """The next build number of ``pipeline``: 1, 2, 3, ... unique under concurrency."""
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "INSERT INTO ansflow_build_numbers (pipeline, last) VALUES (:p, 1) "
                    "ON CONFLICT (pipeline) DO UPDATE SET last = ansflow_build_numbers.last + 1 "
                    "RETURNING last"
                ),
                {"p": pipeline},
            ).one()
        return int(row[0])

    def record_start(self, run_id: str, pipeline: str, build_number: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs.delete().where(runs.c.run_id == run_id))
            conn.execute(runs.insert().values(
                run_id=run_id, pipeline=pipeline, build_number=build_number,
                state="running", started=datetime.now(timezone.utc)))

    def record_end(self, run_id: str, state: str, summary: dict | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(
                state=state, finished=datetime.now(timezone.utc),
                summary=json.dumps(summary) if summary is not None else None))

    def summary(self, run_id: str) -> dict | None:
        """The JSON summary a finished run recorded, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(runs.select().where(runs.c.run_id == run_id)).first()
        return json.loads(row.summary) if row is not None and row.summary else None

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()
