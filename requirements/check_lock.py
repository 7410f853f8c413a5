"""Check that the locks in requirements/ still agree with pyproject.toml, without touching the network.

Run by ``sh requirements/lock --check`` and by the test suite (tests/test_lock.py). It fails, naming the
package, the pinned version and the requirement, when:

- a dependency pyproject.toml asks for (base, the ``test`` extra, the build backend) is missing from a lock or
  pinned at a version the requirement excludes: pyproject.toml changed and the lock was not refreshed;
- in ``lowest.txt``, a direct dependency is not pinned at exactly its floor: the floor in pyproject.toml would
  then be a version the suite never ran with;
- a pinned line carries no hash (pip's ``--require-hashes`` would refuse the file anyway, but say why here).

Exit status 0 when all is well, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # a bare venv: pip always carries a copy
    from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?\s*$")

# The environments a universal lock must serve; a requirement is checked in each one where its marker holds.
_ENVIRONMENTS = [
    {"python_version": v, "python_full_version": f"{v}.0", "sys_platform": plat, "platform_system": system,
     "platform_python_implementation": "CPython", "implementation_name": "cpython", "os_name": os_name,
     "extra": ""}
    for v in ("3.11", "3.12", "3.13")
    for plat, system, os_name in (("linux", "Linux", "posix"), ("darwin", "Darwin", "posix"), ("win32", "Windows", "nt"))
]


def read_lock(path: Path) -> tuple[dict[str, list[tuple[str, str | None]]], list[str]]:
    """Pins per package name ((version, marker) pairs: a universal lock may pin a package twice under markers)."""
    pins: dict[str, list[tuple[str, str | None]]] = {}
    problems: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        match = _PIN.match(line)
        if not match:
            continue
        name, version, marker = match.groups()
        pins.setdefault(canonicalize_name(name), []).append((version, marker))
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if "--hash=" not in following:
            problems.append(f"{path.name}: {name}=={version} has no --hash (run: sh requirements/lock)")
    return pins, problems


def pinned_in(pins: dict[str, list[tuple[str, str | None]]], name: str, env: dict[str, str]) -> str | None:
    for version, marker in pins.get(canonicalize_name(name), []):
        if marker is None or Marker(marker).evaluate(env):
            return version
    return None


def check(lock: Path, requirements: list[str], *, exact_floor: bool = False) -> list[str]:
    pins, problems = read_lock(lock)
    for text in requirements:
        req = Requirement(text)
        for env in _ENVIRONMENTS:
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            version = pinned_in(pins, req.name, env)
            where = f"Python {env['python_version']} on {env['sys_platform']}"
            if version is None:
                problems.append(f"{lock.name}: {req.name} is required ({text!r}) but not locked for {where}")
                break
            if not req.specifier.contains(Version(version), prereleases=True):
                problems.append(f"{lock.name}: {req.name}=={version} does not satisfy {text!r} from pyproject.toml")
                break
            if exact_floor:
                floors = [s.version for s in req.specifier if s.operator == ">="]
                if floors and Version(version) != Version(floors[0]):
                    problems.append(
                        f"{lock.name}: {req.name} is locked at {version} but pyproject.toml's floor is "
                        f"{floors[0]}; the lowest-versions run must test the floor itself"
                    )
                    break
    return problems


def main() -> int:
    with open(ROOT / "pyproject.toml", "rb") as f:
        pyproject = tomllib.load(f)
    base = list(pyproject["project"]["dependencies"])
    test = base + list(pyproject["project"]["optional-dependencies"]["test"])
    # What pip installs the project with (--no-build-isolation): the build backend, and the package hatchling
    # asks for when it builds an editable install.
    build = [*pyproject["build-system"]["requires"], "editables"]
    here = ROOT / "requirements"
    problems = [
        *check(here / "base.txt", base + build),
        *check(here / "test.txt", test + build),
        *check(here / "lowest.txt", test + build, exact_floor=True),
    ]
    build_in = [
        line for line in (here / "build.in").read_text(encoding="utf-8").splitlines() if line and line[0] != "#"
    ]
    if build_in != build:
        problems.append(f"build.in lists {build_in} but pyproject.toml's [build-system] requires {build}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
