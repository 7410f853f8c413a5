"""Replay: run the very same engine over a recorded event file, in event time.

The file is JSON lines (``.jsonl``, ``.jsonl.gz`` or ``-`` for stdin), one event per line, as a shop would
send them. The engine runs on an :class:`~recoverkit.clock.EventClock`: timers fire when the events' own
timestamps pass them, so a day of events replays in seconds and the same file always gives the same
decisions. Every message the engine would send is handed to the given channels (by default: counted, and
written as a JSON line when ``out`` is given). Carts still open when the file ends are censored, not
abandoned, and messages not yet due then are reported as pending.

With a store (a SQLite file) a replay survives ``kill -9``: run it again with ``resume=True`` and it carries on.
What that guarantees, and what is left to the ledger, is in :func:`replay`'s docstring. Without one, the
replay's store is in memory and its own: the events go to the pipeline without being copied into its journal
(nothing could resume from it), which keeps memory flat and saves a fifth of the time.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, BinaryIO, Final

import anyio
import msgspec

from ._files import open_private
from ._input import blocks, kept_lines, read_lines
from .channels.base import Channel, Message
from .channels.jsonl import JsonLinesChannel
from .clock import EventClock
from .config import Config, channel_paths
from .datasets import DatasetError
from .engine import Engine, EngineStatistics
from .errors import InvalidEvent, StoreError
from .events import decode_event
from .score import Scorer
from .store.base import PIPELINE_LEASE, Store

__all__ = ["IncompleteReplay", "ReplaySummary", "read_lines", "replay"]

_CHUNK_LINES = 1024
#: How often a replay looks whether it holds the pipeline lease while it waits for it.
_LEASE_POLL = 0.1


class ReplaySummary(msgspec.Struct, kw_only=True):
    """What a replay did. ``messages`` counts sent messages by ``"flow/step/channel"``."""

    events: int
    accepted: int
    invalid: dict[str, int]
    late: int
    carts: int
    abandonments: dict[str, int]
    reasons: dict[str, int]
    converted: int
    messages: dict[str, int]
    skipped: dict[str, int]
    pending: int
    dead_letters: int
    first_event_at: float | None
    last_event_at: float | None
    seconds: float
    events_per_second: float
    statistics: EngineStatistics
    #: Non-empty lines read from the input (of a resumed replay: also those it skipped).
    lines: int = 0
    #: Events skipped because the store's journal already held them (``resume=True``).
    resumed_after: int = 0
    #: Journal entries this run's pipeline read and decided on: the events it accepted, and on a resume those
    #: the interrupted run had journaled but not yet checkpointed. 0 means this run decided nothing.
    processed: int = 0


class IncompleteReplay(DatasetError):
    """Raised by :func:`replay` when its input could not be read to the end (a truncated or corrupt ``.gz``).

    Everything read before the fault was replayed; ``summary`` says what was decided. The end of the input was
    not declared (events held back for lateness stay held, open carts open), so with a store, a replay of the
    complete file with ``resume=True`` carries on as if nothing had happened. ``path`` and ``line`` (the last
    line read whole) say how far it got.
    """

    def __init__(self, message: str, *, path: str, line: int, summary: ReplaySummary) -> None:
        super().__init__(message, path=path, line=line)
        self.summary = summary


class _Recorder:
    """Counts what dispatch hands over, then passes it to the real adapter (if any).

    ``flush``: called after each message, so that a message is in the ``out`` file before dispatch records it
    as sent: a ``kill -9`` then cannot leave a ``sent`` message that the file lacks.
    """

    def __init__(self, inner: Channel | None) -> None:
        self.inner = inner
        self.flush: Callable[[], None] | None = None
        self.counts: Counter[str] = Counter()

    async def send(self, message: Message) -> None:
        if self.inner is not None:
            await self.inner.send(message)
            if self.flush is not None:
                self.flush()
        self.counts[f"{message.flow}/{message.step}/{message.channel}"] += 1


async def replay(
    source: str | Path | IO[bytes] | list[bytes],
    *,
    config: Config | None = None,
    out: str | Path | BinaryIO | None = None,
    channels: Mapping[str, Channel] | None = None,
    scorer: Scorer | None = None,
    progress: Callable[[int], None] | None = None,
    pending_out: list[Message] | None = None,
    store: Store | str | Path | None = None,
    resume: bool = False,
    on_invalid: Callable[[int, InvalidEvent], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    lease_wait: float | None = None,
) -> ReplaySummary:
    """Replay ``source`` through a fresh engine in event time and summarise what it decided.

    ``store`` keeps the replay's state (a SQLite path or a Store; by default ``config.store.path``, else
    memory). A store whose journal already holds events is refused unless ``resume=True``: replaying the same
    file into it again would apply every event twice.

    **Resuming.** With ``resume=True`` a replay that was interrupted (even by ``kill -9``) carries on where it
    stopped: the first valid events of ``source``, as many as the store's journal has accepted, are skipped
    (validated exactly as the first run did), and the rest are submitted. Use one store per input file: the
    journal's count is all it goes by, and a file with fewer valid events than the journal is refused. The
    pipeline runs in the one process that holds the store's pipeline lease; a killed run keeps it until it
    lapses (``store.lease_ttl`` after its last renewal), so a replay that finds the lease held waits for it
    (``on_wait`` is told once what it waits for, then when it took over) and raises
    :class:`~recoverkit.errors.StoreError` if it is still held after ``lease_wait`` seconds (by default twice
    ``store.lease_ttl`` plus a second): then another process is using the store. It never journals events it
    will not process. After a resume, every message is in the store's ledger exactly once: ``sent``, or
    ``unknown`` when the kill fell between the claim and the adapter's answer (see ``docs/durability.md``).
    ``summary.processed`` is 0 when the resumed run found nothing left to decide.

    **Output.** ``out`` receives every message as a JSON line (personal data included: it is what would be
    sent), flushed to the operating system before the message is recorded as sent, so a ``kill -9`` never
    loses a line whose message the ledger calls ``sent``. A file named by ``out`` is emptied first, so that it
    holds this replay's messages and nothing else, except when resuming a store that holds events: then it is
    appended to, and together the runs' lines hold every message once, apart from ``unknown`` ones, which may
    or may not have been written. (A power loss can still lose lines the ledger has; the ledger is the record.)

    **Input.** Blank lines are skipped; an invalid line is counted by reason in the summary and, when
    ``on_invalid`` is given, reported to it with its line number and the :class:`InvalidEvent`. A file that
    cannot be read to the end (a truncated ``.gz``) raises :class:`IncompleteReplay` carrying the summary of
    what was read. ``channels`` replaces the adapters (each is still counted); ``progress`` is called with the
    number of bytes read so far, for progress bars; ``pending_out``, when given, receives the messages still
    scheduled when the input ended.
    """
    config = config if config is not None else Config()
    engine, recorders, sink = await _build(config, out, channels, scorer, store)
    where = os.fspath(getattr(engine.store, "path", "the store"))
    await _check_store(engine, sink, where, resume=resume, given=isinstance(store, Store), out=out)
    wait = lease_wait if lease_wait is not None else 2 * config.store.lease_ttl + 1.0
    started = time.perf_counter()
    run = _Run(engine, on_invalid)
    try:
        async with engine:
            await _hold_pipeline(engine, wait=wait, on_wait=on_wait, where=where)
            outcome = await _drive(run, source, resume=resume, progress=progress, where=where)
            if pending_out is not None:
                pending_out.extend(outcome.pending)
    finally:
        # After the engine, once each, also when the replay failed: the out file is flushed and closed.
        for adapter in {id(r.inner): r.inner for r in recorders.values() if r.inner is not None}.values():
            close = getattr(adapter, "aclose", None)
            if close is not None:
                await close()
    summary = _summary(engine, run, recorders, outcome, time.perf_counter() - started)
    truncated = outcome.truncated
    if truncated is not None:
        raise IncompleteReplay(
            str(truncated), path=truncated.path, line=truncated.line or 0, summary=summary
        ) from truncated.__cause__
    return summary


async def _build(
    config: Config,
    out: str | Path | BinaryIO | None,
    channels: Mapping[str, Channel] | None,
    scorer: Scorer | None,
    store: Store | str | Path | None,
) -> tuple[Engine, dict[str, _Recorder], JsonLinesChannel | None]:
    """The replay's engine, in event time, with a recorder in front of every channel a step can end up on, and
    the ``out`` file's channel."""
    # Every channel a step can end up on, variants' too: each needs a recorder, or the engine has no adapter.
    used = sorted(channel_paths(config))
    # Opened (for appending) before the store, so a bad path fails before anything else is touched.
    sink: JsonLinesChannel | None = JsonLinesChannel(out) if out is not None else None
    recorders = {name: _Recorder(channels[name] if channels and name in channels else sink) for name in used}
    if sink is not None:
        for recorder in recorders.values():
            if recorder.inner is sink:
                recorder.flush = sink.flush
    try:
        engine = Engine(config, channels=recorders, clock=EventClock(), scorer=scorer, store=store)
    except BaseException:
        if sink is not None:
            await sink.aclose()
        raise
    if store is None and config.store.path is None:
        # The engine's own store in memory, gone with this replay: nothing can resume from its journal, so the
        # lines are handed to the pipeline without a copy there (and no checkpoint is needed to trim it).
        engine.journal.transient = True
    return engine, recorders, sink


async def _check_store(
    engine: Engine,
    sink: JsonLinesChannel | None,
    where: str,
    *,
    resume: bool,
    given: bool,
    out: str | Path | BinaryIO | None,
) -> None:
    """Refuse a store that holds an earlier replay unless resuming; empty the ``out`` file of a new replay.

    ``given``: the store was passed in as a Store (else the engine opened it, and closes it again here).
    """

    async def refuse(why: str) -> StoreError:
        if not given:
            engine.store.close()
        if sink is not None:
            await sink.aclose()
        return StoreError(f"{where}: {why}")

    if engine.partitions is not None:
        raise await refuse(
            f"the store's journal has {engine.partitions['partitions']} partitions; a replay reads and resumes one "
            "sequence, so expected a SQLite file, the in-memory store, or a PostgreSQL store made with "
            "`recoverkit db init URL --partitions 1` (partitions serve live traffic from several hosts)"
        )
    journaled = engine.store.last_seq()
    if journaled and not resume:
        raise await refuse(
            f"the journal already holds {journaled:,} events of an earlier replay; expected a new store, "
            "or resume=True (--resume) to carry that replay on"
        )
    if sink is not None and not journaled and isinstance(out, (str, Path)) and str(out) != "-":
        # Nothing to carry on: this replay's messages and nothing else, in a file only its owner reads.
        os.close(open_private(out, os.O_WRONLY | os.O_TRUNC))


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """What :func:`_drive` saw: the figures read from the engine before it closed."""

    statistics: EngineStatistics
    processed: int
    first: float | None
    last: float | None
    pending: list[Message]
    truncated: DatasetError | None


async def _drive(
    run: _Run,
    source: str | Path | IO[bytes] | list[bytes],
    *,
    resume: bool,
    progress: Callable[[int], None] | None,
    where: str,
) -> _Outcome:
    """Feed ``source`` to the running engine (skipping what the journal has when resuming), declare its end
    unless it was cut short, and read the figures."""
    engine = run.engine
    position = engine.ingest.position
    skip = await engine.call_store(engine.store.last_seq) if resume else 0
    resumed_after = skip
    skip, truncated = await _feed(run, source, skip, progress)
    if skip and truncated is None:
        raise DatasetError(
            f"{_name(source)}: has {resumed_after - skip:,} valid events, but the journal of {where} holds "
            f"{resumed_after:,}; expected the file the interrupted replay read (one input per store)",
            path=_name(source),
        )
    # A truncated input did not end: its end is not declared, so a resume with the whole file carries on.
    await engine.flush(end_of_input=truncated is None)
    if progress is not None:
        progress(run.read)
    return _Outcome(
        statistics=engine.statistics(),
        processed=engine.ingest.position - position,
        first=engine.ingest.first_event_at,
        last=engine.ingest.last_event_at,
        pending=engine.pending_messages(),
        truncated=truncated,
    )


async def _feed(
    run: _Run, source: str | Path | IO[bytes] | list[bytes], skip: int, progress: Callable[[int], None] | None
) -> tuple[int, DatasetError | None]:
    """Hand ``source`` to ``run`` in chunks; the skip left, and the fault that cut the input short (if any)."""
    numbers: list[int] = []
    lines: list[bytes] = []
    read = 0  # lines read, blank ones included: the number of the last one
    truncated: DatasetError | None = None
    try:
        for block in blocks(source):
            kept, at = kept_lines(block, read + 1)
            read += len(block)
            run.lines += len(kept)
            run.read += sum(map(len, kept)) + len(kept)
            lines += kept
            numbers += at
            # While skipping, a chunk never holds more lines than events left to skip, so it cannot hold more
            # valid events either: the skip ends exactly at a chunk's end.
            taken = 0
            while len(lines) - taken >= (size := min(skip, _CHUNK_LINES) if skip else _CHUNK_LINES):
                skip = await run.take(numbers[taken : taken + size], lines[taken : taken + size], skip)
                taken += size
                if progress is not None:
                    progress(run.read)
            if taken:
                del lines[:taken], numbers[:taken]
    except DatasetError as exc:
        truncated = exc
    if lines:
        skip = await run.take(numbers, lines, skip)
    return skip, truncated


def _summary(
    engine: Engine, run: _Run, recorders: dict[str, _Recorder], outcome: _Outcome, seconds: float
) -> ReplaySummary:
    counts: Counter[str] = Counter()
    for recorder in recorders.values():
        counts.update(recorder.counts)
    stats = outcome.statistics
    accepted = stats.events_accepted + run.skipped_valid
    events = accepted + sum(stats.events_invalid.values())
    return ReplaySummary(
        events=events,
        accepted=accepted,
        invalid=stats.events_invalid,
        late=stats.events_late,
        carts=engine.sessionize.counts["carts"],
        abandonments=stats.abandonments,
        reasons=stats.reasons,
        converted=engine.sessionize.counts["converted"],
        messages=dict(sorted(counts.items())),
        skipped=dict(engine.route.skipped),
        pending=len(outcome.pending),
        dead_letters=stats.dead_letters,
        first_event_at=outcome.first,
        last_event_at=outcome.last,
        seconds=seconds,
        events_per_second=events / seconds if seconds > 0 else 0.0,
        statistics=stats,
        lines=run.lines,
        resumed_after=run.skipped_valid,
        processed=outcome.processed,
    )


#: How far a replay journals ahead of what ingest has read: a few chunks keep ingest busy.
LEAD: Final = 8 * _CHUNK_LINES
#: A replay checkpoints after this many events journaled (and the engine on its own every
#: ``store.checkpoint_interval`` seconds): what the journal holds behind the pipeline stays bounded.
CHECKPOINT_EVERY: Final = 50_000


class _Run:
    """Hands a replay's lines to the engine in chunks, and finds the line number of each invalid one."""

    def __init__(self, engine: Engine, on_invalid: Callable[[int, InvalidEvent], None] | None) -> None:
        self.engine = engine
        self.on_invalid = on_invalid
        self.lines = 0
        self.read = 0
        self.skipped_valid = 0
        #: Events journaled since the last checkpoint this replay asked for (see CHECKPOINT_EVERY).
        self.since_checkpoint = 0

    async def take(self, numbers: list[int], lines: list[bytes], skip: int) -> int:
        """Journal ``lines`` (numbered ``numbers`` in the input), or while ``skip`` > 0 only validate them (the
        journal has them); the skip left."""
        journal = self.engine.journal
        invalid = sum(journal.invalid.values())
        known_time = journal.max_ts > float("-inf")
        if skip:
            # The journal's own validation, so the skip counts exactly the events the first run journaled,
            # and the latest event time (the time of events without `ts`) is the first run's too.
            valid = len(journal.accept(lines)[0])
            self.skipped_valid += valid
            skip -= valid
        else:
            await self.engine.submit_many(lines)
            ingest = self.engine.ingest
            while ingest.behind > LEAD and ingest.active:
                # Journaled but not yet read: those events wait decoded in the journal's cache. The file can
                # wait instead (its lines cost nothing until read), so memory does not grow with the lead.
                await anyio.sleep(0.001)
            self.since_checkpoint += len(lines)
            if self.since_checkpoint >= CHECKPOINT_EVERY and not journal.transient:
                # A replay runs faster than the engine's checkpoint interval counts: without this, a store in
                # memory would hold every line of the input until the end (the journal is trimmed only behind a
                # checkpoint), and a resumed replay would redo everything since the start.
                self.since_checkpoint = 0
                await self.engine.checkpoint()
        if self.on_invalid is not None and sum(journal.invalid.values()) > invalid:
            chunk = list(zip(numbers, lines, strict=True))
            for number, error in _find_invalid(chunk, known_time):  # the rare path: decode the chunk again
                self.on_invalid(number, error)
        return skip


def _find_invalid(chunk: list[tuple[int, bytes]], known_time: bool) -> list[tuple[int, InvalidEvent]]:
    """The lines of ``chunk`` the journal refused, with why; ``known_time``: an event time was known before it.

    decode_event refuses all the journal refuses but one thing that needs the replay's state: an event without
    ``ts`` before any event time is known.
    """
    found: list[tuple[int, InvalidEvent]] = []
    for number, line in chunk:
        try:
            event = decode_event(line)
        except InvalidEvent as exc:
            found.append((number, exc))
            continue
        if event.ts is not None:
            known_time = True
        elif not known_time:
            found.append(
                (
                    number,
                    InvalidEvent(
                        "`$.ts` is missing and no event time is known yet; expected a timestamp on the first "
                        "event of a replay",
                        reason="missing_field",
                        field="$.ts",
                    ),
                )
            )
    return found


async def _hold_pipeline(engine: Engine, *, wait: float, on_wait: Callable[[str], None] | None, where: str) -> None:
    """Return once ``engine`` holds the pipeline lease and has restored the checkpoint; wait at most ``wait`` s.

    The engine takes a free lease itself (at start, then on every renewal, every ``lease_ttl / 5`` s); this
    only waits for that, so the replay journals nothing that another process would decide on.
    """
    began = time.monotonic()
    told = False
    while not (engine.is_owner and not engine.statistics().restoring):
        holder = await engine.call_store(engine.store.lease_holder, PIPELINE_LEASE, now=time.time())
        waited = time.monotonic() - began
        if waited >= wait:
            raise StoreError(
                f"{where}: the pipeline lease is still held by {holder or 'another process'}{_process_state(holder)} "
                f"after {waited:.1f} s of waiting; expected it to lapse within store.lease_ttl "
                f"({engine.config.store.lease_ttl:g} s) of its holder's death: another process is using this store "
                "(a replay still running?); let it finish or stop it, then run this again"
            )
        if not told and on_wait is not None and holder is not None and holder != engine.owner:
            told = True
            on_wait(
                f"waiting for the pipeline lease of {where}, held by {holder}{_process_state(holder)}: it lapses "
                f"within store.lease_ttl ({engine.config.store.lease_ttl:g} s) of its last renewal; waiting at "
                f"most {wait:g} s"
            )
        await anyio.sleep(_LEASE_POLL)
    if told and on_wait is not None:
        on_wait(f"took over the pipeline lease of {where} after {time.monotonic() - began:.1f} s; carrying on")


def _process_state(owner: str | None) -> str:
    """What can be told about the lease holder ``owner`` (``host:pid:token``) from here, for a message."""
    parts = (owner or "").split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return ""
    pid = int(parts[1])
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return f" (process {pid}, which no longer runs)"
    except OSError:  # PermissionError: it exists, as another user's
        pass
    return f" (process {pid}, which is running)"


def _name(source: str | Path | IO[bytes] | list[bytes]) -> str:
    if isinstance(source, (str, Path)):
        return "<stdin>" if str(source) == "-" else os.fspath(source)
    if isinstance(source, list):
        return "<lines>"
    return str(getattr(source, "name", "<stream>"))
