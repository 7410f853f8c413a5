"""Assembly: one engine's parts, wired once from its configuration and the shop's plug-ins.

:class:`Assembly` opens the store (unless one was given), builds the one
:class:`~recoverkit._store_runner.StoreRunner` every part reaches the store through, the journal and the five
stages, then the two components that run them: :class:`~recoverkit._ownership.Ownership` (lease, checkpoints,
restores, retention) and :class:`~recoverkit._runner.Runner` (the tasks). What it opened it closes
(:meth:`Assembly.close_adapters`, :meth:`Assembly.close_store`); a store the shop passed in stays open.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._contain import Containment, Plugin
from ._log import get_logger
from ._ownership import Ownership
from ._pipeline import Lease
from ._purchases import Purchases
from ._runner import Runner
from ._store_runner import StoreRunner
from .clock import Clock, WallClock
from .config import Config
from .deadletters import DeadLetters
from .dispatch import Dispatch
from .errors import ConfigError
from .ingest import Ingest
from .journal import Journal
from .links import RestoreLinks
from .offers import CodeBook, CouponProvider
from .plugins import Plugins
from .route import Route
from .score import Score
from .sessionize import Sessionize
from .store import is_store_url, open_store_url
from .store.base import Store
from .store.memory import MemoryStore
from .store.sqlite import SQLiteStore

__all__ = ["Assembly"]

_log = get_logger("recoverkit.engine")


class Assembly:
    """The parts of one engine; see the module docstring. ``plugins`` has been validated against ``config``.

    ``owner`` names this process in leases and the ledger; ``deliver=False`` holds due messages instead of
    sending them; ``pipeline=False`` makes a journal writer that never takes the pipeline lease (and so needs a
    store shared with the worker that does: a store it would open in memory is a :class:`ConfigError`).
    """

    def __init__(self, config: Config, plugins: Plugins, *, owner: str, deliver: bool, pipeline: bool) -> None:
        self.config = config
        self.plugins = plugins
        self.clock: Clock = plugins.clock if plugins.clock is not None else WallClock()
        self.channels = dict(plugins.channels or {})
        letters = plugins.dead_letters
        dead = letters if isinstance(letters, DeadLetters) else DeadLetters(letters)  # before the store, as it was
        self.store, self.owns_store = self._open_store(plugins.store)
        #: Whether closing closes the channel adapters (not in a partition's pipeline: they are the engine's).
        self.owns_adapters = True
        if not pipeline and self.owns_store and isinstance(self.store, MemoryStore):
            raise ConfigError(
                "pipeline=False journals events for a worker in another process, so it needs a shared store: "
                "set config.store.path (or pass store=PATH) to the SQLite file the worker reads"
            )
        self.runner = StoreRunner(self.store)
        self.lease = Lease()
        live = not self.clock.event_time  # live, purchases reach the claims ahead of the pipeline
        self.journal = Journal(
            config,
            self.clock,
            self.store,
            durability=config.store.durability,
            purchases=Purchases(self.store, ahead=live),
        )
        self.ingest = Ingest(config, self.clock, self.journal, self.runner, self.lease)
        self.sessionize = Sessionize(config, event_time=self.clock.event_time)
        self.score = Score(plugins.scorer, shipping_shock_ratio=config.shipping_shock_ratio)
        self.route = Route(config, rates=plugins.rates)
        self.coupons = plugins.coupons if plugins.coupons is not None else self._default_coupons()
        links = plugins.links
        self.links = links if links is not None else RestoreLinks.from_config(config.links, clock=self.clock)
        self.dispatch = self._dispatch(owner, dead)
        self.dispatch.delivering = deliver
        self.stages = (self.ingest, self.sessionize, self.score, self.route, self.dispatch)
        self.ownership = Ownership(
            config,
            self.runner,
            self.clock,
            owner=owner,
            lease=self.lease,
            claims=self.dispatch,
            reader=self.ingest,
            pipeline=pipeline,
            purges=deliver,
        )
        # Dispatch tells ownership when an erasure was applied (checkpoint soon) and when a claim was refused for
        # want of the lease (check it now).
        self.dispatch.on_forgotten = self.ownership.forgotten
        self.dispatch.on_claim_refused = self.ownership.claim_refused
        self.tasks = Runner(config, self.clock, self.stages, self.ingest, self.lease)

    def _dispatch(self, owner: str, dead: DeadLetters) -> Dispatch:
        return Dispatch(
            self.config,
            self.channels,
            self.clock,
            dead,
            store=self.store,
            call=self.runner,
            owner=owner,
            guard=self.plugins.guard,
            coupons=self.coupons,
            links=self.links,
            catalogue=self.plugins.catalogue,
            loyalty=self.plugins.loyalty,
        )

    def _open_store(self, store: Store | str | os.PathLike[str] | Path | None) -> tuple[Store, bool]:
        settings = self.config.store
        if store is None:
            if settings.path is None:
                return MemoryStore(), True
            store = settings.path
        if is_store_url(store):  # postgresql://...: the store several hosts share (docs/scaling.md)
            return open_store_url(str(store)), True
        if isinstance(store, (str, os.PathLike)):
            return SQLiteStore(store, synchronous=settings.synchronous, busy_timeout=settings.busy_timeout), True
        return store, False  # a Store: Plugins.validate refused anything else

    def _default_coupons(self) -> CouponProvider | None:
        config = self.config
        if not config.code_offers():
            return None
        name = config.code_secret_env
        secret = os.environ.get(name, "")
        if len(secret.encode()) < 32:
            raise ConfigError(
                f"the flows make offers with codes ({', '.join(config.code_offers())}) but the environment "
                f"variable {name} {'is empty' if not secret else 'is shorter than 32 bytes'}; expected a random "
                "secret of at least 32 bytes (python -c 'import secrets; print(secrets.token_urlsafe(48))'), or "
                "pass coupons=<your CouponProvider> to Engine"
            )
        return CodeBook(self.store, secret, policy=config.codes, clock=self.clock)

    async def close_adapters(self) -> None:
        """Close the channel adapters, each once, through the containment every other call into shop code
        takes: under its channel's ``timeout`` (plus the short grace), in a task of its own. One that raises
        (``CancelledError`` included), hangs or ignores its cancellation is logged (``plugin_failed``,
        ``plugin_abandoned``) and left; it never holds up the engine's close or keeps the next adapter open."""
        if not self.owns_adapters:
            return
        contain = Containment(_log)
        names: dict[int, str] = {}
        for name, adapter in self.channels.items():
            names.setdefault(id(adapter), name)  # an adapter serving several channels closes once
        for name in names.values():
            adapter = self.channels[name]
            close = getattr(adapter, "aclose", None)
            if close is not None:
                plugin = Plugin("channel", f"{name!r} adapter ({type(adapter).__name__}) aclose")
                await contain.call(plugin, close, timeout=self.config.channel_policy(name).timeout)

    async def close_store(self) -> None:
        """Close the store if this assembly opened it (a store the shop passed in stays open)."""
        if self.owns_store:
            await self.runner(self.store.close)
