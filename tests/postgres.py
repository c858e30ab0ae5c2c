"""A throwaway PostgreSQL server from the system's binaries (Debian's `postgresql` package): `initdb` and `pg_ctl`
into a temporary folder, a Unix socket only (no TCP port opened), stopped and removed afterwards. `initdb` refuses
to run as root, so as root the server runs as the `postgres` user."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def postgres_bin(name: str) -> str | None:
    """`initdb` / `pg_ctl` on PATH, or in Debian's versioned folder (/usr/lib/postgresql/<n>/bin)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres_server(database: str = "optuna") -> Iterator[str]:
    """Yield a SQLAlchemy URL of a new database on a fresh server; the server is stopped and its folder removed."""
    initdb, pg_ctl, createdb = postgres_bin("initdb"), postgres_bin("pg_ctl"), postgres_bin("createdb")
    if not (initdb and pg_ctl and createdb):
        raise FileNotFoundError("PostgreSQL's initdb / pg_ctl / createdb (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    root.chmod(0o755)
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    options = f"-c listen_addresses='' -k {sockets} -c fsync=off -c max_connections=50"
    try:
        subprocess.run(_as_server_user([initdb, "-D", str(data), "-A", "trust", "-U", user]), check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w",
                                        "-t", "60", "start"]), check=True, capture_output=True, timeout=90)  # fmt: skip
        subprocess.run(_as_server_user([createdb, "-h", str(sockets), "-U", user, database]), check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        yield f"postgresql+psycopg://{user}@/{database}?host={sockets}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
