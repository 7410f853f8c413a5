from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from recoverkit.channels import JsonLinesChannel, Message
from recoverkit.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError

from .contract import FREESHIP, ChannelContract, make_message

pytestmark = pytest.mark.anyio

decoder = msgspec.json.Decoder(Message)


def read_messages(data: bytes) -> list[Message]:
    return [decoder.decode(line) for line in data.splitlines()]


class TestJsonLinesChannelOnAFileContract(ChannelContract):
    @pytest.fixture
    async def channel(self, tmp_path: Path) -> AsyncIterator[JsonLinesChannel]:
        self.path = tmp_path / "out.jsonl"
        channel = JsonLinesChannel(self.path)
        yield channel
        await channel.aclose()

    def delivered_keys(self, channel: JsonLinesChannel) -> list[str]:
        channel.flush()
        return [message.key for message in read_messages(self.path.read_bytes())]


class TestJsonLinesChannelOnAStreamContract(ChannelContract):
    @pytest.fixture
    def channel(self) -> JsonLinesChannel:
        self.stream = io.BytesIO()
        return JsonLinesChannel(self.stream)

    def delivered_keys(self, channel: JsonLinesChannel) -> list[str]:
        return [message.key for message in read_messages(self.stream.getvalue())]


async def test_each_line_decodes_back_to_the_exact_message(tmp_path: Path) -> None:
    messages = [make_message(), make_message("cart-2/winback/1", variant="B", offer=FREESHIP, step=1)]
    channel = JsonLinesChannel(tmp_path / "out.jsonl")
    for message in messages:
        await channel.send(message)
    await channel.aclose()
    assert read_messages((tmp_path / "out.jsonl").read_bytes()) == messages


async def test_a_line_is_exactly_the_message_fields_including_defaults() -> None:
    stream = io.BytesIO()
    await JsonLinesChannel(stream).send(make_message())
    line = msgspec.json.decode(stream.getvalue())
    assert set(line) == set(Message.__struct_fields__)
    assert line["variant"] is None and line["recipient"]["email"] == "jane.doe@example.com"


async def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    for key in ("first/default/0", "second/default/0"):
        channel = JsonLinesChannel(path)
        await channel.send(make_message(key))
        await channel.aclose()
    assert [m.key for m in read_messages(path.read_bytes())] == ["first/default/0", "second/default/0"]


async def test_aclose_closes_a_file_it_opened(tmp_path: Path) -> None:
    channel = JsonLinesChannel(tmp_path / "out.jsonl")
    file = channel._stream
    await channel.aclose()
    assert file.closed


async def test_aclose_flushes_but_leaves_a_given_stream_open() -> None:
    stream = io.BufferedWriter(io.BytesIO())
    channel = JsonLinesChannel(stream)
    await channel.send(make_message())
    await channel.aclose()
    assert not stream.closed
    assert [m.key for m in read_messages(stream.raw.getvalue())] == ["cart-1/default/0"]
    stream.close()


async def test_dash_writes_to_standard_output(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    channel = JsonLinesChannel("-")
    await channel.send(make_message())
    await channel.aclose()
    assert not sys.stdout.closed
    assert [m.key for m in read_messages(capsysbinary.readouterr().out)] == ["cart-1/default/0"]


def test_a_text_stream_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"needs a binary stream.*\.buffer"):
        JsonLinesChannel(io.StringIO())  # type: ignore[arg-type]


def test_a_path_that_cannot_be_opened_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        JsonLinesChannel(tmp_path / "missing" / "out.jsonl")


async def test_send_after_aclose_is_a_permanent_failure_naming_the_key() -> None:
    channel = JsonLinesChannel(io.BytesIO())
    await channel.aclose()
    with pytest.raises(PermanentDeliveryError, match=r"closed; message 'cart-1/default/0'"):
        await channel.send(make_message())


class _FullDisk(io.RawIOBase):
    name = "/mnt/full/out.jsonl"

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise OSError(28, "No space left on device")


async def test_a_write_error_is_transient_and_names_the_target_and_key() -> None:
    with pytest.raises(TransientDeliveryError, match=r"'cart-1/default/0' to /mnt/full/out.jsonl") as info:
        await JsonLinesChannel(_FullDisk()).send(make_message())  # type: ignore[arg-type]
    assert isinstance(info.value.__cause__, OSError)


async def test_a_new_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    # Messages carry shoppers' addresses: 0600 whatever the umask; an existing file keeps the mode it has.
    import os
    import stat

    previous = os.umask(0o022)
    try:
        channel = JsonLinesChannel(tmp_path / "new.jsonl")
        await channel.send(make_message())
        await channel.aclose()
        existing = tmp_path / "existing.jsonl"
        existing.write_bytes(b"")
        existing.chmod(0o640)
        channel = JsonLinesChannel(existing)
        await channel.send(make_message())
        await channel.aclose()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o600
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    assert len(read_messages((tmp_path / "new.jsonl").read_bytes())) == 1
