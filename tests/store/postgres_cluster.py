"""A throwaway PostgreSQL cluster for the tests (and benchmarks) of the PostgreSQL store.

:class:`Cluster` runs ``initdb`` in a temporary directory (in ``/dev/shm`` when there is one) and starts a server
that listens on a Unix socket in that directory only (no TCP port, so nothing else on the machine can reach it,
and no port can collide); it is stopped and the directory removed at the end, also when a test failed. The
server runs with ``fsync=off``: a cluster that lives for one test session need not survive a power loss, and the
store's own durability is PostgreSQL's (nothing of it is tested by fsyncing a temporary directory).

The fixtures:

- ``postgres_cluster`` (session scope): the running :class:`Cluster`. Without PostgreSQL on the machine (no
  ``initdb``/``pg_ctl`` on ``PATH`` nor in ``/usr/lib/postgresql/*/bin``) every test that uses it skips with the
  reason, unless ``RECOVERKIT_REQUIRE_POSTGRES=1`` (as ``.ci/run`` sets), when it fails instead: CI must run them.
- ``postgres_url``: a connection URL to a new, empty database made for the one test, dropped after it (about
  0.2-0.4 s to make and drop, on this 2-core machine);
- ``postgres_shared_url`` (session scope): one database for tests that give each store a schema of its own
  (the store contract, whose property tests open a store per example), made once.

A test module uses them by importing them (``from .postgres_cluster import postgres_cluster, postgres_url``);
``benchmarks/bench_pg_journal.py`` uses :class:`Cluster` directly.

initdb refuses to run as root, so as root the cluster is made and run as the ``postgres`` system user (Debian's
package creates it) through ``runuser``, and the temporary directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

__all__ = [
    "Cluster", "ClusterUnavailable", "find_binaries", "postgres_cluster", "postgres_shared_url", "postgres_url",
]  # fmt: skip

#: The superuser initdb creates; tests connect as it (trust authentication on the socket only).
SUPERUSER = "recoverkit"
#: The port number names the socket file (``.s.PGSQL.<port>``); with no TCP listener it need not be free.
PORT = 5432
_REQUIRE = "RECOVERKIT_REQUIRE_POSTGRES"


class ClusterUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed, or the cluster could not be started."""


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: from ``PATH``, else Debian's newest version directory."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if candidates:
        return Path(candidates[-1]).parent
    raise ClusterUnavailable(
        "PostgreSQL's server is not installed (no initdb on PATH nor in /usr/lib/postgresql/*/bin); "
        "install Debian's postgresql package to run these tests"
    )


class Cluster:
    """A PostgreSQL server of its own in a temporary directory; see the module docstring."""

    def __init__(self) -> None:
        self.bin = find_binaries()
        # In memory (tmpfs) where there is one: the cluster holds a few files per table, the store contract
        # makes hundreds of small schemas, and on this machine's disk removing their ~20,000 files took 14 s.
        memory = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.directory = Path(tempfile.mkdtemp(prefix="recoverkit-pg-", dir=memory))
        self.data = self.directory / "data"
        self._as_postgres = os.geteuid() == 0
        self._names = itertools.count(1)
        self.running = False

    # -- life -----------------------------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            raise ClusterUnavailable(f"{what} failed ({result.returncode}): {result.stderr.strip() or result.stdout}")

    def init(self) -> None:
        if self._as_postgres:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ClusterUnavailable("running as root, and there is no `postgres` user to run initdb as") from exc
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        result = self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--no-sync",
            "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        self._check(result, "initdb")

    def start(self) -> None:
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.directory}' -p {PORT} -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
        )
        result = self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "server.log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        if result.returncode != 0:
            log = (self.directory / "server.log").read_text(errors="replace")[-2000:] if self._log_exists() else ""
            raise ClusterUnavailable(f"pg_ctl start failed: {result.stderr.strip()} {log}")
        self.running = True

    def _log_exists(self) -> bool:
        return (self.directory / "server.log").exists()

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- databases ------------------------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for ``database`` over the cluster's socket."""
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.directory), safe='')}&port={PORT}"

    def admin(self, statement: str) -> None:
        """Run one statement (autocommit, so CREATE/DROP DATABASE may) in the ``postgres`` database."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]  # the tests' own statements, not user input

    def create_database(self) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _unavailable(reason: str) -> None:
    if os.environ.get(_REQUIRE) == "1":
        pytest.fail(f"{_REQUIRE}=1 but PostgreSQL cannot be used: {reason}")
    pytest.skip(f"PostgreSQL cannot be used: {reason}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install '.[postgres]')")
    try:
        cluster = Cluster()
    except ClusterUnavailable as exc:
        _unavailable(str(exc))
    try:
        cluster.init()
        cluster.start()
    except (ClusterUnavailable, OSError, subprocess.SubprocessError) as exc:
        cluster.remove()
        _unavailable(str(exc))
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> Iterator[str]:
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture(scope="session")
def postgres_shared_url(postgres_cluster: Cluster) -> str:
    # Not dropped: with a few hundred schemas in it that takes half a minute, and the whole cluster is removed
    # at the end of the session anyway.
    return postgres_cluster.url(postgres_cluster.create_database())
