"""Shared set-up: every async test runs on asyncio with and without uvloop (anyio's pytest plugin), no test
leaves a handler or a level on recoverkit's logger behind, native thread pools are kept to one thread, and
Hypothesis runs under the "dev" or the "ci" profile."""

from __future__ import annotations

import logging
import os

# Before anything imports numpy or scikit-learn: their OpenMP and BLAS pools read these when they load. A pool
# sized for every core spins while it waits for work; on a 2-core machine already running the suite's other
# processes that turned a 2 s model fit into 20 s and ran a test past its timeout. One thread makes a fit's time
# depend on the work alone. `setdefault`, so that a run may still ask for more; subprocesses inherit the limit.
for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_pool, "1")

from collections.abc import Iterator  # noqa: E402 - after the thread limits, on purpose

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# "dev" (the default): new random examples on every run, and a failure is saved in .hypothesis/ and tried first
# next time, which is what the edit loop wants. "ci": the same examples on every run (derandomised, seeded from
# each test) and the blob that reproduces a failure printed in the log; nothing is read from or written to a
# database. Neither has a deadline, and "ci" skips the too-slow health check: an example that is slow on a loaded
# machine is not a bug, and speed is measured in benchmarks/. Chosen by $HYPOTHESIS_PROFILE, else by $CI being
# set (as CI services and .ci/run set it); `pytest --hypothesis-profile=NAME` overrides both. Both derive from
# Hypothesis's own defaults, not from whatever profile Hypothesis loaded itself on seeing $CI.
_defaults = settings.get_profile("default")
settings.register_profile("dev", _defaults, deadline=None)
settings.register_profile(
    "ci", _defaults, derandomize=True, deadline=None, print_blob=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _restore_recoverkit_logger() -> Iterator[None]:
    # The CLI's main() and the framework commands attach a stderr handler to the "recoverkit" logger and set its
    # level (their process is theirs); put back what the rest of the test session had.
    logger = logging.getLogger("recoverkit")
    handlers, level, propagate, disabled = list(logger.handlers), logger.level, logger.propagate, logger.disabled
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param
