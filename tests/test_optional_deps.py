"""A lean install: ``import recoverkit`` imports no optional dependency, and a part whose extra is missing says
which extra to install, where it is first used (recoverkit._optional)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from recoverkit import ConfigError, MissingExtraError, RecoverkitError
from recoverkit._optional import deferred, require
from recoverkit.integration import IntegrationSettings

#: What the base install does without, and what would make `import recoverkit` slow if imported with it.
OPTIONAL = (
    "aiosmtplib", "httpx", "jinja2", "markupsafe", "rich", "uvloop", "sklearn", "numpy", "prometheus_client",
    "django", "flask", "starlette",
)  # fmt: skip
#: recoverkit's own modules that only the adapters needing an extra use (loaded when first named).
ADAPTER_MODULES = ("recoverkit.channels.http", "recoverkit.channels.smtp", "recoverkit.channels.webhook",
                   "recoverkit.templates")  # fmt: skip


def run_child(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_import_recoverkit_imports_no_optional_dependency() -> None:
    # A fresh process: this one has imported everything the other tests use.
    out = run_child(f"""
        import json, sys
        import recoverkit
        print(json.dumps(sorted(name for name in {OPTIONAL!r} if name in sys.modules)))
    """)
    assert json.loads(out) == []


@pytest.mark.slow
def test_import_recoverkit_leaves_the_adapters_that_need_an_extra_unloaded() -> None:
    out = run_child(f"""
        import json, sys
        import recoverkit
        before = sorted(name for name in {ADAPTER_MODULES!r} if name in sys.modules)
        recoverkit.SmtpChannel  # loaded on first access, with the modules it needs
        after = sorted(name for name in {ADAPTER_MODULES!r} if name in sys.modules)
        print(json.dumps([before, after]))
    """)
    assert json.loads(out) == [[], ["recoverkit.channels.smtp", "recoverkit.templates"]]


#: What a shop reaches for, and the extra its message must name; built in a child where every optional
#: dependency is blocked, as on a base install.
FEATURES = {
    "SmtpChannel": ("recoverkit.SmtpChannel('localhost', sender='shop@example.com')", "aiosmtplib", "smtp"),
    "WebhookChannel": ("recoverkit.WebhookChannel('https://shop.example/hooks/recoverkit')", "httpx", "http"),
    "HttpChannel": ("recoverkit.HttpChannel('https://sms.example/send')", "httpx", "http"),
    "Templates": ("recoverkit.Templates()", "jinja2", "templates"),
    "render_html": (
        "render_html(build_report(store=recoverkit.MemoryStore(), now=1_700_000_000.0))",
        "jinja2",
        "templates",
    ),
}


@pytest.fixture(scope="module")
def without_extras() -> dict[str, dict[str, str]]:
    """What each feature raised in one child process that cannot import any optional dependency."""
    out = run_child(f"""
        import json, sys
        for name in {OPTIONAL!r}:
            sys.modules[name] = None  # what `import name` finds on a base install: ModuleNotFoundError
        import recoverkit
        from recoverkit.analytics import build_report, render_html
        found = {{}}
        for feature, (code, _, _) in {FEATURES!r}.items():
            try:
                eval(code)
            except Exception as exc:
                found[feature] = {{
                    "type": type(exc).__name__, "message": str(exc), "name": getattr(exc, "name", None),
                    "extra": getattr(exc, "extra", None), "feature": getattr(exc, "feature", None),
                    "import_error": isinstance(exc, ImportError),
                    "recoverkit_error": isinstance(exc, recoverkit.RecoverkitError),
                    "cause": type(exc.__cause__).__name__,
                }}
            else:
                found[feature] = {{"type": "nothing raised"}}
        print(json.dumps(found))
    """)
    found: dict[str, dict[str, str]] = json.loads(out)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_a_feature_without_its_extra_names_the_extra_when_built(
    without_extras: dict[str, dict[str, str]], feature: str
) -> None:
    _, module, extra = FEATURES[feature]
    error = without_extras[feature]
    assert error["type"] == "MissingExtraError"
    assert error["import_error"] and error["recoverkit_error"]
    assert (error["name"], error["extra"]) == (module, extra)
    assert f"pip install 'recoverkit[{extra}]'" in error["message"]
    assert f"needs the {module} package, which is not installed" in error["message"]
    assert error["cause"] == "ModuleNotFoundError"


def test_a_channel_named_in_the_settings_without_its_extra_fails_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lean_shop_channels.py").write_text(
        "from recoverkit import SmtpChannel\n\n\n"
        "def email():\n"
        "    return SmtpChannel('mail.shop.example', sender='shop@shop.example')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "aiosmtplib", None)  # as on an install without the smtp extra
    with pytest.raises(ConfigError) as caught:
        IntegrationSettings.from_mapping(
            {"CHANNELS": {"email": "lean_shop_channels.email"}}, source="settings.RECOVERKIT"
        )
    assert "settings.RECOVERKIT['CHANNELS']['email']" in str(caught.value)
    assert "pip install 'recoverkit[smtp]'" in str(caught.value)


def test_a_channel_is_refused_at_construction_not_at_the_first_send(monkeypatch: pytest.MonkeyPatch) -> None:
    # The channel modules are imported already (with their dependency deferred); building one must still look.
    import recoverkit

    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(MissingExtraError, match=r"WebhookChannel needs the httpx package") as caught:
        recoverkit.WebhookChannel("https://shop.example/hooks/recoverkit")
    assert caught.value.extra == "http" and caught.value.feature == "WebhookChannel"


def test_a_package_that_is_installed_but_broken_is_reported_with_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lean_broken_dependency.py").write_text("import lean_its_missing_dependency\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError) as caught:
        require("lean_broken_dependency", extra="smtp", feature="SmtpChannel")
    message = str(caught.value)
    assert "which fails to import (No module named 'lean_its_missing_dependency')" in message
    assert "pip install 'recoverkit[smtp]'" in message
    assert isinstance(caught.value, RecoverkitError) and isinstance(caught.value, ImportError)
    assert caught.value.name == "lean_broken_dependency"
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_a_deferred_module_imports_on_first_use_and_then_is_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lean_deferred_target.py").write_text("ANSWER = 42\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lean_deferred_target", raising=False)
    proxy = deferred("lean_deferred_target", extra="templates", feature="Templates")
    assert "lean_deferred_target" not in sys.modules
    assert "not imported yet" in repr(proxy)
    assert proxy.ANSWER == 42
    assert "lean_deferred_target" in sys.modules
    assert "imported;" in repr(proxy)


def test_a_deferred_module_that_is_missing_raises_on_first_use() -> None:
    proxy = deferred("lean_no_such_package", extra="http", feature="HttpChannel")
    with pytest.raises(MissingExtraError, match=r"pip install 'recoverkit\[http\]'"):
        _ = proxy.AsyncClient
