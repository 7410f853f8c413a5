"""Checkpoints written in parts (recoverkit._msgpack_parts): the very bytes msgspec writes in one call."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from recoverkit import _msgpack_parts as parts
from recoverkit._ownership import CHECKPOINT_FORMAT, _CheckpointBlob, _encode_blob


@pytest.mark.parametrize("sizes", [(), (0,), (3, 255, 256), (65_535, 65_536), (parts.INLINE_JOIN + 1, 17)])
def test_a_checkpoint_blob_written_in_parts_is_what_msgspec_writes(sizes: tuple[int, ...]) -> None:
    states = {f"stage-{n}": bytes([n % 251]) * size for n, size in enumerate(sizes)}
    blob = anyio.run(_encode_blob, "host:1234:abcd", states)
    assert blob == msgspec.msgpack.encode(_CheckpointBlob(CHECKPOINT_FORMAT, "host:1234:abcd", states))
    assert msgspec.msgpack.decode(blob, type=_CheckpointBlob).states == states


@pytest.mark.parametrize("count", [0, 1, 15, 16, 100, 70_000])
def test_items_encoded_in_parts_are_the_array_or_map_msgspec_writes(count: int) -> None:
    values = [[n, f"v{n}"] for n in range(count)]
    mapping = {f"k{n}": n for n in range(count)}

    async def encode() -> tuple[bytes, bytes]:
        listed: list[bytes] = []
        await parts.encode_in_parts(iter(values), len(values), list, listed, step=7)
        mapped: list[bytes] = []
        await parts.encode_in_parts(iter(mapping.items()), len(mapping), dict, mapped, step=7)
        assert all(type(part) is bytes for part in listed + mapped)  # bytes.join drops the GIL only for bytes
        return await parts.join(listed), await parts.join(mapped)

    listed, mapped = anyio.run(encode)
    assert listed == msgspec.msgpack.encode(values) and mapped == msgspec.msgpack.encode(mapping)


def test_a_dict_changed_while_it_is_encoded_in_parts_is_an_error_not_a_torn_checkpoint() -> None:
    mapping = {f"k{n}": n for n in range(100)}

    async def change() -> None:
        await anyio.sleep(0)  # the encoder has written its first part and let the loop run
        mapping["late"] = 1

    async def encode() -> None:
        out: list[bytes] = []
        async with anyio.create_task_group() as group:
            group.start_soon(change)
            with pytest.raises(RuntimeError, match="changed size"):
                await parts.encode_in_parts(iter(mapping.items()), len(mapping), dict, out, step=10)

    anyio.run(encode)


class _Fields(msgspec.Struct, array_like=True):
    when: float
    items: list[tuple[str, int]]
    index: dict[str, list[int]]
    small: dict[str, int]
    lazy: list[int]


def test_a_struct_encoded_field_by_field_in_parts_is_what_msgspec_writes() -> None:
    whole = _Fields(
        when=1.5,
        items=[(f"i{n}", n) for n in range(50)],
        index={f"k{n}": [n, n + 1] for n in range(33)},
        small={"a": 1},
        lazy=list(range(20)),
    )
    fields = [
        whole.when, whole.items, whole.index, whole.small, parts.Lazy(iter(range(20)), 20, list),
    ]  # fmt: skip
    assert anyio.run(lambda: parts.encode_fields(fields, step=8)) == msgspec.msgpack.encode(whole)


@pytest.mark.parametrize("size", [parts.INLINE_JOIN - 1, parts.INLINE_JOIN])
def test_a_large_join_runs_on_a_worker_thread_and_a_small_one_inline(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = [b"a" * (size - 1), b"b"]
    handed: list[object] = []
    real = anyio.to_thread.run_sync

    async def recording(fn: Any, *args: Any, **kwargs: Any) -> Any:
        handed.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recording)
    assert anyio.run(parts.join, pieces) == b"a" * (size - 1) + b"b"
    assert handed == ([b"".join] if size >= parts.INLINE_JOIN else [])
