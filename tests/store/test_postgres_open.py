"""A PostgreSQL store opened from a URL wherever a store path is accepted (``Engine(store=...)``, the integration
settings, Django's ``DATABASES``), and ``recoverkit db init|check|info URL``; never a password in what is printed
or raised (tests/store/postgres_cluster.py starts the server)."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import quote

import anyio
import pytest

from recoverkit import Config, Engine, MemoryStore
from recoverkit.cli import main
from recoverkit.errors import StoreError
from recoverkit.store import is_store_url

from .postgres_cluster import postgres_cluster, postgres_url  # noqa: F401 - fixtures used by name

pytest.importorskip("psycopg", reason="the postgres extra is not installed (pip install '.[postgres]')")

from recoverkit.store.postgres import PostgresStore, init

#: The cluster trusts its socket, so any password is accepted: one that must never be printed.
PASSWORD = "pw-s3cret-never-shown"


def with_password(url: str) -> str:
    return url.replace("recoverkit@", f"recoverkit:{quote(PASSWORD)}@", 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("postgresql://u:p@db:5432/shop", True),
        ("postgres://u@db/shop", True),
        ("  POSTGRESQL://db/shop", True),
        ("state.db", False),
        ("/var/lib/recoverkit/postgresql.db", False),
        (None, False),
        (MemoryStore(), False),
    ],
)
def test_a_postgresql_url_is_told_from_a_file_path(value: object, expected: bool) -> None:
    assert is_store_url(value) is expected


def test_a_store_label_never_holds_the_password() -> None:
    from recoverkit.store import store_label

    assert store_label("postgresql://shop:s3cret@db:5432/shop?sslmode=require") == (
        "postgresql://shop@db:5432/shop?sslmode=require"
    )
    assert store_label("postgres://db/shop?password=s3cret&user=shop") == "postgres://db/shop?user=shop"


def test_a_url_without_the_postgres_extra_names_the_extra(tmp_path: object) -> None:
    # A fresh interpreter where psycopg cannot be imported: the store package imports, opening a URL names the fix.
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import recoverkit.store\n"
        "from recoverkit.errors import MissingExtraError\n"
        "try:\n"
        "    recoverkit.store.open_store_url('postgresql://shop:s3cret@db/shop')\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'recoverkit[postgres]'" in done.stdout and "s3cret" not in done.stdout


def test_the_store_package_names_postgres_store_lazily() -> None:
    import recoverkit.store

    assert recoverkit.store.PostgresStore is PostgresStore
    assert "PostgresStore" not in recoverkit.store.__all__  # `from recoverkit.store import *` needs no psycopg


def test_an_engine_given_a_url_runs_on_the_postgres_store_and_closes_it(postgres_url: str) -> None:  # noqa: F811
    init(postgres_url)

    async def run() -> None:
        async with Engine(Config(), store=with_password(postgres_url)) as engine:
            assert engine.track({"event": "page_view", "session_id": "s1", "ts": 1_700_000_000.0, "url": "/"})
            await engine.flush()

    anyio.run(run)
    with PostgresStore(postgres_url) as store:
        assert store.last_seq() == 1


def test_an_engine_on_a_url_without_a_store_names_the_command_and_hides_the_password(
    postgres_url: str,  # noqa: F811
) -> None:
    async def run() -> None:
        async with Engine(Config(), store=with_password(postgres_url)):
            pass

    with pytest.raises(StoreError, match="recoverkit db init URL") as caught:
        anyio.run(run)
    assert PASSWORD not in str(caught.value)


def test_db_init_check_info_on_a_url(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    url = with_password(postgres_url)
    assert main(["db", "init", url, "--partitions", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["partitions"] == 4
    assert main(["db", "init", url]) == 0  # again, without the count: the existing store is kept
    assert "4 partitions" in capsys.readouterr().out
    with PostgresStore(postgres_url) as store:
        store.append_keyed([("s1", b"{}"), ("s2", b"{}")], now=1.0)
        store.take_partition(store.partition_of("s1"), "host-a", ttl=30)
    assert main(["db", "check", url]) == 0
    assert ": ok" in capsys.readouterr().out
    assert main(["db", "info", url, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["partitions"] == 4 and len(document["status"]) == 4
    assert sum(row["lag"] for row in document["status"]) == 2
    assert [row["owner"] for row in document["status"] if row["owner"]] == ["host-a"]
    assert main(["db", "info", url]) == 0
    out = capsys.readouterr().out
    assert "4 partitions" in out and "host-a" in out and "lag 2 events" in out
    assert PASSWORD not in out


def test_db_on_a_url_without_a_store_fails_with_the_fix(
    postgres_url: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["db", "info", with_password(postgres_url)]) == 2
    err = capsys.readouterr().err
    assert "recoverkit db init URL" in err and PASSWORD not in err
    assert main(["db", "init", with_password(postgres_url), "--partitions", "0"]) == 2
    assert "partitions" in capsys.readouterr().err


def test_db_init_is_only_for_a_url(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "init", "state.db"]) == 2
    assert "postgresql://" in capsys.readouterr().err


def test_django_store_names_a_database_alias(postgres_url: str) -> None:  # noqa: F811
    pytest.importorskip("django")
    from urllib.parse import parse_qs, urlsplit

    from django.conf import settings

    from recoverkit.contrib.django import settings_from_django

    parts = urlsplit(postgres_url)
    socket = parse_qs(parts.query)["host"][0]
    database = {
        "ENGINE": "django.db.backends.postgresql", "NAME": parts.path.lstrip("/"), "USER": "recoverkit",
        "PASSWORD": PASSWORD, "HOST": socket, "PORT": "5432", "OPTIONS": {"pool": False, "sslmode": "disable"},
    }  # fmt: skip
    if not settings.configured:
        settings.configure()
    saved = getattr(settings, "DATABASES", None)
    settings.DATABASES = {"default": database, "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}}
    try:
        store = settings_from_django({"STORE": {"DATABASE": "default"}}).plugins.store
        assert isinstance(store, str) and is_store_url(store)
        init(store)
        with PostgresStore(store) as opened:
            assert opened.partitions == 1 and PASSWORD not in repr(opened)
        with pytest.raises(Exception, match="PostgreSQL database") as caught:
            settings_from_django({"STORE": {"DATABASE": "other"}})
        with pytest.raises(Exception, match="no database 'missing'"):
            settings_from_django({"STORE": {"DATABASE": "missing"}})
        assert PASSWORD not in str(caught.value)
    finally:
        settings.DATABASES = saved
