"""The clocks: FakeClock can be moved from another thread than the loop its sleepers wait on."""

from __future__ import annotations

import threading

import anyio
import pytest

from recoverkit.clock import FakeClock


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_advancing_from_another_thread_wakes_a_sleeper_on_its_own_loop(use_uvloop: bool) -> None:
    clock = FakeClock(0.0)
    asleep = threading.Event()
    woke: list[float] = []

    async def sleeper() -> None:
        async def note_asleep() -> None:
            await anyio.sleep(0.01)
            asleep.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(note_asleep)
            with anyio.move_on_after(60):  # real seconds: only a lost wake-up waits this long
                await clock.sleep(60)
            woke.append(clock.now())

    thread = threading.Thread(
        target=lambda: anyio.run(sleeper, backend="asyncio", backend_options={"use_uvloop": use_uvloop})
    )
    thread.start()
    assert asleep.wait(10)
    clock.advance(30)
    clock.advance(30)  # from this thread, while the loop sleeps in its selector
    thread.join(10)  # a wake-up set on the wrong thread leaves the loop asleep far longer than this
    assert woke == [60.0]
    thread.join()


def test_a_fake_clock_never_goes_back() -> None:
    clock = FakeClock(100.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(99.0)
    with pytest.raises(ValueError, match="seconds >= 0"):
        clock.advance(-1)
    assert clock.now() == 100.0
