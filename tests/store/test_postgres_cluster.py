"""The throwaway cluster's own rules: where it finds PostgreSQL, and skip or fail when there is none."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

import pytest

from . import postgres_cluster
from .postgres_cluster import ClusterUnavailable, find_binaries


def test_without_postgresql_the_reason_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    with pytest.raises(ClusterUnavailable, match="install Debian's postgresql package"):
        find_binaries()


def test_debians_newest_version_directory_is_found_off_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    found = [f"/usr/lib/postgresql/{version}/bin/initdb" for version in ("9.6", "15", "13")]
    monkeypatch.setattr(glob, "glob", lambda pattern: found)
    assert find_binaries() == Path("/usr/lib/postgresql/15/bin")


def test_unavailable_skips_but_fails_when_postgresql_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECOVERKIT_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL cannot be used: no server"):
        postgres_cluster._unavailable("no server")
    monkeypatch.setenv("RECOVERKIT_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="RECOVERKIT_REQUIRE_POSTGRES=1 but PostgreSQL cannot be used"):
        postgres_cluster._unavailable("no server")
