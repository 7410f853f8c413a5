"""The public face: ``import recoverkit`` gives a shop's developer everything, under a sorted ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

import recoverkit

#: Modules whose every public name is meant for users, so all of it must be exported from the package.
USER_MODULES = [
    "recoverkit.background",
    "recoverkit.cart",
    "recoverkit.channels",
    "recoverkit.channels.base",
    "recoverkit.channels.console",
    "recoverkit.channels.jsonl",
    "recoverkit.channels.memory",
    "recoverkit.channels.webhook",
    "recoverkit.channels.smtp",
    "recoverkit.channels.http",
    "recoverkit.clock",
    "recoverkit.deadletters",
    "recoverkit.engine",
    "recoverkit.errors",
]
#: Names that users need from modules that also hold internals (stages, helpers, dataset tools).
USER_NAMES = {
    "recoverkit.config": [
        "Cap", "ChannelPolicy", "Condition", "Config", "Flow", "FlowStep", "OfferSpec", "QuietHours", "StoreConfig",
        "Variant", "load_config",
    ],
    "recoverkit.templates": ["Rendered", "TemplateError", "Templates"],
    "recoverkit.offers": [
        "CodeBook", "CodePolicy", "CouponProvider", "Offer", "OfferStatistics", "Redemption", "Refused",
    ],
    "recoverkit.links": ["RestoreLinks", "RestoreToken"],
    "recoverkit.events": ["EVENT_KINDS", "Event", "Item", "decode_event", "encode_event"],
    "recoverkit.score": ["Assessment", "DefaultScorer", "Features", "Scorer"],
    "recoverkit.channels.audiences": ["AudienceMembers", "MemoryAudience"],
    "recoverkit.channels.google_ads": ["GoogleAdsAudience"],
    "recoverkit.channels.meta": ["MetaAudience"],
    "recoverkit.channels.whatsapp": ["WhatsAppChannel", "WhatsAppTemplate"],
    "recoverkit.channels.messenger": ["MessengerChannel"],
    "recoverkit.onsite": ["OnsiteChannel"],
    "recoverkit.channels._withdrawal": ["Withdrawal", "Withdrawing"],
}


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 and the house style use: CONSTANTS, then Classes, then everything else."""
    if name.isupper() and len(name) > 1:
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


def package_modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.walk_packages(recoverkit.__path__, "recoverkit."):
        if info.name != "recoverkit.__main__":  # running it is running the CLI
            found.append(importlib.import_module(info.name))
    return found


def test_all_is_sorted() -> None:
    assert recoverkit.__all__ == sorted(recoverkit.__all__, key=isort_key)


def test_all_has_no_duplicates() -> None:
    assert len(set(recoverkit.__all__)) == len(recoverkit.__all__)


def test_all_has_no_private_names() -> None:
    assert [
        name for name in recoverkit.__all__ if name.startswith("_") and not re.fullmatch(r"__\w+__", name)
    ] == []


def test_every_name_in_all_resolves() -> None:
    assert [name for name in recoverkit.__all__ if not hasattr(recoverkit, name)] == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from recoverkit import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(recoverkit.__all__)


def test_every_public_name_the_package_imports_is_in_all() -> None:
    imported = [
        name
        for name, value in vars(recoverkit).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    ]
    assert sorted(set(imported) - set(recoverkit.__all__)) == []


@pytest.mark.parametrize("module", USER_MODULES)
def test_every_public_name_of_a_user_module_is_exported(module: str) -> None:
    names = importlib.import_module(module).__all__
    assert [name for name in names if name not in recoverkit.__all__] == []


@pytest.mark.parametrize("module", sorted(USER_NAMES))
def test_the_user_facing_names_of_mixed_modules_are_exported(module: str) -> None:
    assert [name for name in USER_NAMES[module] if name not in recoverkit.__all__] == []


def test_exported_names_are_the_very_objects_of_their_modules() -> None:
    for module in package_modules():
        for name in getattr(module, "__all__", []):
            if name in recoverkit.__all__:
                assert getattr(recoverkit, name) is getattr(module, name), f"{module.__name__}.{name}"


def test_every_module_names_only_what_it_defines_in_its_all() -> None:
    for module in package_modules():
        assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], module.__name__


def test_every_exported_class_and_function_is_documented() -> None:
    undocumented = [
        name
        for name in recoverkit.__all__
        if (inspect.isclass(obj := getattr(recoverkit, name)) or inspect.isfunction(obj))
        and not (obj.__doc__ or "").strip()
    ]
    assert undocumented == []


def test_version_is_a_string() -> None:
    assert isinstance(recoverkit.__version__, str) and recoverkit.__version__
