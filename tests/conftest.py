"""Shared test fixtures. A real PostgreSQL server for the key-store suite.

``postgres_dsn`` (session scope) starts Debian's PostgreSQL (``/usr/lib/postgresql/*/bin``)
in a temporary data directory, listening on 127.0.0.1 on a free port, and stops it at the
end. PostgreSQL refuses to run as root, so under root it runs as the unprivileged system
user ``qkdnet-pg`` (created if missing) via ``runuser``. Tests that need it are skipped,
with the reason, only when the binaries are not installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _cli import Cli, in_process_runner

PG_USER = "qkdnet-pg"


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", PG_USER, "--", *cmd]


def _ensure_pg_user() -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", PG_USER],
            check=True, capture_output=True,
        )


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a throw-away PostgreSQL server started for this test session."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin "
                    "(install Debian's postgresql package: make system-deps)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install '.[test]')")
    _ensure_pg_user()
    root = Path(tempfile.mkdtemp(prefix="qkdnet-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER)
        shutil.chown(sock, PG_USER)
    os.chmod(root, 0o700)
    port = _free_port()
    try:
        subprocess.run(
            _as_pg_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                         "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True, timeout=120,
        )
        subprocess.run(
            _as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                         "-t", "60", "-o",
                         f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                         "-c max_connections=200", "start"]),
            check=True, capture_output=True, timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc}\n{getattr(exc, 'stderr', '')}"
                           f"\n{log}") from exc
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run(
            _as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                         "stop"]),
            capture_output=True, timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def fresh_postgres_schema(dsn: str) -> str:
    """Create an empty schema on the server and return a DSN whose search_path is it."""
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{dsn} options='-c search_path={schema}'"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], object]]:
    """A factory of fresh, empty key stores of one backend: ``store_factory("A")``.

    Parametrised over SQLite (a file per node) and PostgreSQL (a schema per node on the
    session's server), so every test that uses it runs against both backends.
    """
    from qkdnet.keys import SQLiteKeyStore

    made: list[object] = []
    if request.param == "sqlite":
        def make(name: str) -> object:
            # NORMAL: still safe against process crashes (WAL); spares CI an fsync per
            # commit. The crash test's node processes run the default, FULL.
            store = SQLiteKeyStore(tmp_path / f"{name}.db", synchronous="NORMAL")
            made.append(store)
            return store
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        from qkdnet.keys.postgres import PostgresKeyStore

        schemas: dict[str, str] = {}

        def make(name: str) -> object:
            # The same name opens the same database again (a second connection).
            if name not in schemas:
                schemas[name] = fresh_postgres_schema(dsn)
            store = PostgresKeyStore(schemas[name])
            made.append(store)
            return store
    yield make
    for store in made:
        store.close()  # type: ignore[attr-defined]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``run_cli("link", "--distance", "50")``: the real ``qkdnet`` entry point, in-process."""
    return in_process_runner(capsys, monkeypatch)
