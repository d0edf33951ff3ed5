"""The small state store: build numbers per pipeline and a record of runs (SQLAlchemy).

SQLite under ANSFLOW_HOME by default; any SQLAlchemy URL via ANSFLOW_DATABASE_URL (e.g.
PostgreSQL shared by several machines). Build numbers come from one atomic
INSERT .. ON CONFLICT .. RETURNING, so concurrent runs never share a number.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

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
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from ansflow.errors import AnsflowError

BUSY_TIMEOUT_ENV = "ANSFLOW_DATABASE_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT = 60.0
_T = TypeVar("_T")


class StoreError(AnsflowError):
    """The store cannot be read or written: one line naming the store and the reason."""


def describe_url(url: str) -> str:
    """The store's URL for messages: never its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands
        return url.split("@")[-1][:200]


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = " ".join(str(original).split()) or type(original).__name__
    return text[:300]


def guarded(action: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """Database and file errors of a Store method become one StoreError line."""
    def decorate(method: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(method)
        def wrapper(self: Store, *args: Any, **kwargs: Any) -> _T:
            try:
                return method(self, *args, **kwargs)
            except (SQLAlchemyError, OSError) as exc:
                raise StoreError(f"the ansflow store ({describe_url(self.url)}) could not "
                                 f"{action}: {_reason(exc)}") from None
            except ImportError as exc:  # ANSFLOW_DATABASE_URL names a driver not installed
                raise StoreError(f"the ansflow store ({describe_url(self.url)}) could not "
                                 f"{action}: its database driver is not installed "
                                 f"({exc.name or exc})") from None
        return wrapper
    return decorate


def busy_timeout() -> float:
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise StoreError(f"{BUSY_TIMEOUT_ENV} must be seconds from 0 to 3600, got {raw[:40]!r}")
    return value

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
# Images docker_build built, per engine: what `ansflow cleanup --docker` keeps the newest
# builds of (labels on the image would cost the legacy builder one step per label).
images = Table(
    "ansflow_images", metadata,
    Column("engine", String(255), primary_key=True),
    Column("image_id", String(128), primary_key=True),
    Column("pipeline", String(255), nullable=False, index=True),
    Column("build_number", Integer, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("built", DateTime(timezone=True), nullable=False),
)

# What a retry of a run needs (ansflow.flows.rerun): the pipeline file's hash at the run,
# and each step's result (only outputs that held no secret are kept; other steps re-run).
run_files = Table(
    "ansflow_run_files", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("pipeline_file", Text, nullable=False),
    Column("file_sha256", String(64), nullable=False),
)
# The digest of the flow run's parameters as the run started with them: a retry runs them
# only if the Prefect server still holds the same (the API can change a flow run's parameters).
run_params = Table(
    "ansflow_run_params", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("params_sha256", String(64), nullable=False),
)
step_results = Table(
    "ansflow_step_results", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("step_id", String(255), primary_key=True),
    Column("state", String(32), nullable=False),
    Column("exit_code", Integer),
    Column("outputs", Text),  # JSON; NULL: not reusable (its outputs held a secret)
)


def ansflow_home() -> Path:
    return Path(os.environ.get("ANSFLOW_HOME") or Path.home() / ".ansflow")


def ensure_home() -> Path:
    """ANSFLOW_HOME, made 0700: it holds the store, the state key and dev clusters' keys,
    for this user alone. An existing one of this user that others could enter (made by an
    earlier release, or by a tool honouring the umask) is tightened to 0700.

    Raises:
        OSError: it cannot be created.
    """
    home = ansflow_home()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    _owner_only(home, 0o700)
    return home


def _owner_only(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            path.chmod(mode)
    except OSError:
        pass  # not ours to change: left as the operator made it


def database_url() -> str:
    """ANSFLOW_DATABASE_URL, else the SQLite store under ANSFLOW_HOME (created 0600: SQLite
    itself would follow the umask, and gives its -wal and -shm files the store's mode).

    Raises:
        StoreError: ANSFLOW_HOME or the store cannot be created.
    """
    url = os.environ.get("ANSFLOW_DATABASE_URL")
    if url:
        return url
    home = ansflow_home()
    db = home / "ansflow.db"
    try:
        ensure_home()
        # Only a store that does not exist yet is opened here (O_EXCL): closing any
        # descriptor of the database file drops every POSIX lock this process holds on it,
        # so touching an existing store would pull the locks from under this process's own
        # SQLite connections (stale reads, and writes another process can interleave).
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"the ansflow store cannot be created under ANSFLOW_HOME {home}: "
                         f"{exc.strerror or exc}") from None
    _owner_only(db, 0o600)
    return f"sqlite:///{db}"


class Store:
    """Opens its own engine; create one per use (nothing is cached at module level)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or database_url()
        self._open()

    @guarded("be opened")
    def _open(self) -> None:
        wait = busy_timeout()
        if self.url.startswith("sqlite"):
            kwargs: dict[str, Any] = {"connect_args": {"timeout": wait}}
        elif self.url.startswith("postgresql"):
            kwargs = {"connect_args": {"connect_timeout": max(int(wait), 1)}}
        else:
            kwargs = {}
        self.engine: Engine = create_engine(self.url, future=True, **kwargs)
        if self.url.startswith("sqlite"):
            event.listen(self.engine, "connect",
                         functools.partial(_sqlite_pragmas, busy_ms=int(wait * 1000)))
        create_tables(self.engine, metadata)

    @guarded("allocate a build number")
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

    @guarded("record the run's start")
    def record_start(self, run_id: str, pipeline: str, build_number: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs.delete().where(runs.c.run_id == run_id))
            conn.execute(runs.insert().values(
                run_id=run_id, pipeline=pipeline, build_number=build_number,
                state="running", started=datetime.now(timezone.utc)))

    @guarded("record the run's end")
    def record_end(self, run_id: str, state: str, summary: dict | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(
                state=state, finished=datetime.now(timezone.utc),
                summary=json.dumps(summary) if summary is not None else None))

    @guarded("read run states")
    def run_states(self, run_ids: list[str]) -> list[tuple[str, str, datetime | None]]:
        """(run_id, state, finished) of those of ``run_ids`` the store recorded."""
        if not run_ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(runs.select().with_only_columns(
                runs.c.run_id, runs.c.state, runs.c.finished).where(
                runs.c.run_id.in_(list(run_ids)))).all()
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]

    @guarded("count old run records")
    def count_runs_before(self, cutoff: datetime) -> int:
        """How many runs finished before ``cutoff`` (runs still going are never counted)."""
        from sqlalchemy import func, select  # noqa: PLC0415

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(runs).where(
                runs.c.finished.is_not(None), runs.c.finished < cutoff)).scalar_one())

    @guarded("remove old run records")
    def purge_runs_before(self, cutoff: datetime) -> int:
        """Remove the records of runs that finished before ``cutoff``; how many went."""
        with self.engine.begin() as conn:
            result = conn.execute(runs.delete().where(
                runs.c.finished.is_not(None), runs.c.finished < cutoff))
        return int(result.rowcount or 0)

    @guarded("record a built image")
    def record_image(self, engine: str, image_id: str, pipeline: str, build_number: int,
                     run_id: str) -> None:
        """Remember that ``pipeline``'s build ``build_number`` made ``image_id`` on
        ``engine`` (an image rebuilt from cache by a later build takes that build)."""
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            row = conn.execute(images.select().where(
                images.c.engine == engine, images.c.image_id == image_id)).first()
            if row is None:
                conn.execute(images.insert().values(
                    engine=engine, image_id=image_id, pipeline=pipeline,
                    build_number=build_number, run_id=run_id, built=now))
            elif (row.pipeline, row.build_number) != (pipeline, build_number):
                conn.execute(images.update().where(
                    images.c.engine == engine, images.c.image_id == image_id).values(
                    pipeline=pipeline, build_number=max(build_number, row.build_number)
                    if pipeline == row.pipeline else build_number, run_id=run_id, built=now))

    @guarded("read the built images")
    def built_images(self, engine: str) -> list[dict[str, Any]]:
        """The images recorded for ``engine``: image_id, pipeline, build_number, built."""
        with self.engine.connect() as conn:
            rows = conn.execute(images.select().where(images.c.engine == engine)).all()
        return [{"image_id": r.image_id, "pipeline": r.pipeline,
                 "build_number": int(r.build_number), "built": r.built} for r in rows]

    @guarded("forget removed images")
    def forget_images(self, engine: str, image_ids: list[str]) -> None:
        if not image_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(images.delete().where(images.c.engine == engine,
                                               images.c.image_id.in_(list(image_ids))))

    @guarded("read a run's summary")
    def summary(self, run_id: str) -> dict | None:
        """The JSON summary a finished run recorded, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(runs.select().where(runs.c.run_id == run_id)).first()
        return json.loads(row.summary) if row is not None and row.summary else None

    @guarded("read a run")
    def run(self, run_id: str) -> dict | None:
        """The run's record (pipeline, build number, state, and the pipeline file, its hash
        and the parameters' digest when the run recorded them), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(runs.select().where(runs.c.run_id == run_id)).first()
            if row is None:
                return None
            file = conn.execute(run_files.select().where(run_files.c.run_id == run_id)).first()
            params = conn.execute(run_params.select().where(
                run_params.c.run_id == run_id)).first()
        return {"run_id": row.run_id, "pipeline": row.pipeline,
                "build_number": int(row.build_number), "state": row.state,
                "pipeline_file": file.pipeline_file if file is not None else None,
                "file_sha256": file.file_sha256 if file is not None else None,
                "params_sha256": params.params_sha256 if params is not None else None}

    @guarded("record the run's parameters")
    def record_params(self, run_id: str, params_sha256: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(run_params.delete().where(run_params.c.run_id == run_id))
            conn.execute(run_params.insert().values(run_id=run_id,
                                                    params_sha256=params_sha256))

    @guarded("record the run's pipeline file")
    def record_file(self, run_id: str, pipeline_file: str, file_sha256: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(run_files.delete().where(run_files.c.run_id == run_id))
            conn.execute(run_files.insert().values(run_id=run_id, pipeline_file=pipeline_file,
                                                   file_sha256=file_sha256))

    @guarded("record the run's step results")
    def record_steps(self, run_id: str, results: list[dict]) -> None:
        """Replace the run's step results: dicts of step_id, state, exit_code, outputs
        (a dict, or None when they must not be reused)."""
        with self.engine.begin() as conn:
            conn.execute(step_results.delete().where(step_results.c.run_id == run_id))
            if results:
                conn.execute(step_results.insert(), [
                    {"run_id": run_id, "step_id": r["step_id"], "state": r["state"],
                     "exit_code": r.get("exit_code"),
                     "outputs": None if r.get("outputs") is None else json.dumps(r["outputs"])}
                    for r in results])

    @guarded("read the run's step results")
    def step_results(self, run_id: str) -> dict[str, dict]:
        """The run's step results by step id (outputs None: not reusable)."""
        with self.engine.connect() as conn:
            rows = conn.execute(step_results.select().where(
                step_results.c.run_id == run_id)).all()
        return {r.step_id: {"state": r.state, "exit_code": r.exit_code,
                            "outputs": json.loads(r.outputs) if r.outputs is not None else None}
                for r in rows}

    def close(self) -> None:
        self.engine.dispose()


def create_tables(engine: Engine, tables: MetaData) -> None:
    """Create the tables that do not exist yet; several processes opening a new store at
    once race between checking and creating: the loser finds them made, and checks again."""
    for attempt in range(len(tables.tables) + 1):
        try:
            tables.create_all(engine, checkfirst=True)
            return
        except SQLAlchemyError:
            if attempt == len(tables.tables):
                raise  # not a race: each lost race leaves one table fewer to make


def add_missing_columns(engine: Engine, table: Table) -> list[str]:
    """Add to ``table`` in the database the columns its definition has and the database
    lacks (an additive migration: a store written by an earlier release keeps its rows, the
    new columns start NULL, so each must be nullable). Safe when several processes open
    the same old store at once. The names of the columns added.
    """
    from sqlalchemy import inspect  # noqa: PLC0415

    present = {c["name"] for c in inspect(engine).get_columns(table.name)}
    added = []
    for column in table.columns:
        if column.name in present:
            continue
        if not column.nullable or column.primary_key:
            raise StoreError(f"the store's table {table.name} lacks column {column.name}, "
                             "which cannot be added to existing rows")
        ddl = (f"ALTER TABLE {engine.dialect.identifier_preparer.format_table(table)} ADD "
               f"COLUMN {engine.dialect.identifier_preparer.format_column(column)} "
               f"{column.type.compile(dialect=engine.dialect)}")
        try:
            with engine.begin() as conn:
                conn.execute(text(ddl))
        except SQLAlchemyError:
            # Another process added it first: fine if it is there now.
            if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                raise
        added.append(column.name)
    return added


def _sqlite_pragmas(dbapi_conn, _record, busy_ms: int = 60000) -> None:  # noqa: ANN001
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")  # first: WAL itself may wait on a lock
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()
