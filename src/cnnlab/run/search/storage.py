"""Where a study lives: one string picks it (`hydra.sweeper.storage`).

sqlite:///<path>/optuna.db          one machine (the default: in the sweep dir)
postgresql://user@host:5432/db      many machines on a real database (also mysql://...); the password from
                                    PGPASSWORD or ~/.pgpass, never in the URL, which every job's .hydra/ records
journal:///<shared path>/study.log  many machines on a shared filesystem, no server (Optuna's journal file)
"""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

from cnnlab.errors import CnnlabError

JOURNAL = "journal:"


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage `url` names; a clear error for one it cannot open."""
    if not url:
        raise CnnlabError("hydra.sweeper.storage is empty: give sqlite:///<path>.db, a database URL or "
                          "journal:///<path>.log (docs/sweeps.md#optuna).")  # fmt: skip
    if url.startswith(JOURNAL):
        path = Path(journal_path(url))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        parsed = make_url(_with_driver(url))
    except ArgumentError:
        raise CnnlabError(f"hydra.sweeper.storage={url!r} is neither a database URL (sqlite:///..., "
                          "postgresql://...) nor journal:///<path>.log.") from None  # fmt: skip
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        return _rdb_storage(parsed.render_as_string(hide_password=False), _engine_kwargs(parsed))
    except Exception as err:
        raise CnnlabError(f"hydra.sweeper.storage={shown(url)}: cannot open the study's database "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:300]}). Check that the server runs and "
                          "accepts this user (password in PGPASSWORD or ~/.pgpass).") from None  # fmt: skip


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], attempts: int = 6) -> RDBStorage:
    """Optuna's RDB storage. Workers started at once on a new database all create its tables, and PostgreSQL lets
    only one `CREATE TABLE` of a name win (the others fail on pg_type's unique index): the losers try again, and
    find the tables made (measured: 2 of 4 three-worker starts failed so before this)."""
    for attempt in range(attempts):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, ProgrammingError, OperationalError) as err:
            lost_the_race = not isinstance(err, OperationalError) or "already exists" in str(err)  # SQLite's way
            if attempt == attempts - 1 or not lost_the_race:
                raise
            time.sleep(0.2 + random.random() * (attempt + 1))  # jittered: the retries must not collide again
    raise AssertionError("unreachable")


def journal_path(url: str) -> str:
    """`journal:///shared/study.log` -> `/shared/study.log`; `journal:study.log` -> `study.log`."""
    rest = url[len(JOURNAL) :]
    return rest[2:] if rest.startswith("//") else rest


def shown(url: str) -> str:
    """The URL as logs and errors may show it: without its password."""
    if url.startswith(JOURNAL):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unreadable URL>"


def has_password(url: str) -> bool:
    try:
        return not url.startswith(JOURNAL) and bool(make_url(url).password)
    except ArgumentError:
        return False


def _with_driver(url: str) -> str:
    """`postgresql://` means psycopg2 to SQLAlchemy; cnnlab installs psycopg (3), so it is used when psycopg2 is not."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _engine_kwargs(url: Any) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}  # several processes on one file wait for its lock, not fail
    return {"pool_pre_ping": True}  # a server restarted between two trials: reconnect, not fail
