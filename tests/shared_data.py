"""Where the tests find the public datasets that are not part of the repository.

The datasets (REES46, Retailrocket, UCI; see their README for provenance and licences) live next to the
repository in ``../shared/data``, or wherever ``RECOVERKIT_SHARED_DATA`` points. Some of them may not be
redistributed, which is why they are not committed here. Tests that need them call :func:`require_shared`,
which skips the test, saying what is missing, when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["ENV_VAR", "require_shared", "shared_data_dir"]

ENV_VAR = "RECOVERKIT_SHARED_DATA"


def shared_data_dir() -> Path:
    """``$RECOVERKIT_SHARED_DATA`` when set, else ``<repository>/../shared/data``."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def require_shared(relpath: str) -> Path:
    """The path of ``relpath`` inside the shared data directory; skips the calling test when it is absent."""
    path = shared_data_dir() / relpath
    if not path.exists():
        pytest.skip(
            f"{path} not found: these tests need the public datasets in ../shared/data (see CONTRIBUTING) "
            f"or a directory named by ${ENV_VAR}"
        )
    return path
