"""What the integrations' ``check`` commands print (``recoverkit._integration_commands.describe``)."""

from __future__ import annotations

import pytest

from recoverkit._integration_commands import describe
from recoverkit.integration import IntegrationSettings

URL = "postgresql://shop:s3cret-Pa55@db.internal:5432/shop?sslmode=require&password=other-s3cret"


@pytest.mark.parametrize("mapping", [{"STORE": URL}, {"CONFIG": {"store": {"path": URL}}}])
def test_a_store_url_is_printed_without_its_password(mapping: dict[str, object]) -> None:
    settings = IntegrationSettings.from_mapping({"MODE": "off", **mapping}, source="settings.RECOVERKIT")
    lines, _ = describe(settings, program="manage.py recoverkit")
    [store] = [line for line in lines if line.startswith("store: ")]
    assert "shop@db.internal:5432/shop" in store
    assert "sslmode=require" in store
    assert "s3cret" not in "\n".join(lines)


def test_a_file_path_is_printed_as_given(tmp_path: object) -> None:
    path = f"{tmp_path}/rk.db"
    settings = IntegrationSettings.from_mapping({"MODE": "off", "STORE": path}, source="settings.RECOVERKIT")
    lines, _ = describe(settings, program="manage.py recoverkit")
    assert f"store: {path}" in lines
