from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .shop import Shop, running_shop


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    yield from running_shop(tmp_path)
