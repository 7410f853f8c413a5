"""recoverkit: win back abandoned carts in real time, from inside your shop's own process.

A shop hands recoverkit its checkout events; a five-stage asyncio pipeline (ingest → sessionize → score →
route → dispatch) detects abandoned carts, scores them, applies the shop's recovery flows and delivers the
messages through adapters the shop supplies. Everything a shop's developer needs is importable from here::

    import recoverkit

    engine = recoverkit.BackgroundEngine(channels={"email": MyEmailAdapter()})   # WSGI (Django, Flask)
    engine.track({"event": "add_to_cart", "session_id": "s-1", "items": [...]})

    async with recoverkit.Engine(channels=...) as engine:                          # asyncio / ASGI
        engine.track(event)
"""

# Private aliases: every public name of this module is an export (tests/test_public_api.py).
import importlib as _importlib
import typing as _typing

from .background import BackgroundEngine
from .cart import CartLine, CartSnapshot, CheckoutSignals
from .catalogue import Catalogue, Product, StaticCatalogue, Suggestion
from .channels import (
    Channel,
    ConsoleChannel,
    JsonLinesChannel,
    MemoryChannel,
    Message,
    Recipient,
    Withdrawal,
    Withdrawing,
)
from .clock import Clock, EventClock, FakeClock, WallClock
from .config import (
    Cap,
    ChannelPolicy,
    Condition,
    Config,
    CurrencyConfig,
    Flow,
    FlowStep,
    OfferSpec,
    QuietHours,
    StoreConfig,
    Variant,
    load_config,
)
from .currency import Rates, StaticRates
from .deadletters import DeadLetter, DeadLetters
from .dispatch import Guard
from .engine import Engine, EngineStatistics
from .errors import (
    ConfigError,
    DeliveryError,
    EngineStateError,
    InvalidEvent,
    LinkError,
    MissingExtraError,
    PermanentDeliveryError,
    RecoverkitError,
    StoreError,
    TransientDeliveryError,
)
from .events import EVENT_KINDS, Event, Item, decode_event, encode_event
from .links import RestoreLinks, RestoreToken
from .loyalty import Loyalty, LoyaltyGrant, MemoryLoyalty, NotGranted
from .model import ModelScorer, load_model
from .offers import (
    CodeBook,
    CodePolicy,
    CouponProvider,
    Offer,
    OfferStatistics,
    Redemption,
    Refused,
)
from .plugins import Plugins
from .score import Assessment, DefaultScorer, Features, Scorer
from .store import (
    Checkpoint,
    DeadLetterRecord,
    JournalEntry,
    LedgerEntry,
    MemoryStore,
    SQLiteStore,
    Store,
    StoreStatistics,
)

if _typing.TYPE_CHECKING:
    from .channels.audiences import AudienceMembers, MemoryAudience
    from .channels.google_ads import GoogleAdsAudience
    from .channels.http import HttpChannel, RequestSpec
    from .channels.messenger import MessengerChannel
    from .channels.meta import MetaAudience
    from .channels.smtp import SmtpChannel
    from .channels.webhook import WebhookChannel
    from .channels.whatsapp import WhatsAppChannel, WhatsAppTemplate
    from .onsite import OnsiteChannel
    from .templates import Rendered, TemplateError, Templates

__version__ = "0.2.0"

__all__ = [
    "EVENT_KINDS",
    "Assessment",
    "AudienceMembers",
    "BackgroundEngine",
    "Cap",
    "CartLine",
    "CartSnapshot",
    "Catalogue",
    "Channel",
    "ChannelPolicy",
    "CheckoutSignals",
    "Checkpoint",
    "Clock",
    "CodeBook",
    "CodePolicy",
    "Condition",
    "Config",
    "ConfigError",
    "ConsoleChannel",
    "CouponProvider",
    "CurrencyConfig",
    "DeadLetter",
    "DeadLetterRecord",
    "DeadLetters",
    "DefaultScorer",
    "DeliveryError",
    "Engine",
    "EngineStateError",
    "EngineStatistics",
    "Event",
    "EventClock",
    "FakeClock",
    "Features",
    "Flow",
    "FlowStep",
    "GoogleAdsAudience",
    "Guard",
    "HttpChannel",
    "InvalidEvent",
    "Item",
    "JournalEntry",
    "JsonLinesChannel",
    "LedgerEntry",
    "LinkError",
    "Loyalty",
    "LoyaltyGrant",
    "MemoryAudience",
    "MemoryChannel",
    "MemoryLoyalty",
    "MemoryStore",
    "Message",
    "MessengerChannel",
    "MetaAudience",
    "MissingExtraError",
    "ModelScorer",
    "NotGranted",
    "Offer",
    "OfferSpec",
    "OfferStatistics",
    "OnsiteChannel",
    "PermanentDeliveryError",
    "Plugins",
    "Product",
    "QuietHours",
    "Rates",
    "Recipient",
    "RecoverkitError",
    "Redemption",
    "Refused",
    "Rendered",
    "RequestSpec",
    "RestoreLinks",
    "RestoreToken",
    "SQLiteStore",
    "Scorer",
    "SmtpChannel",
    "StaticCatalogue",
    "StaticRates",
    "Store",
    "StoreConfig",
    "StoreError",
    "StoreStatistics",
    "Suggestion",
    "TemplateError",
    "Templates",
    "TransientDeliveryError",
    "Variant",
    "WallClock",
    "WebhookChannel",
    "WhatsAppChannel",
    "WhatsAppTemplate",
    "Withdrawal",
    "Withdrawing",
    "__version__",
    "decode_event",
    "encode_event",
    "load_config",
    "load_model",
]

#: Names loaded on first access (``recoverkit.SmtpChannel`` or ``from recoverkit import SmtpChannel``), and their
#: module: the channel adapters that need an extra, and the templates they render with. Their modules import the
#: standard library's email package, zoneinfo and the like, which the engine does without; importing them here
#: would put that cost on every ``import recoverkit`` (a guard in tests/test_optional_deps.py).
_LAZY = {
    "AudienceMembers": "recoverkit.channels.audiences",
    "GoogleAdsAudience": "recoverkit.channels.google_ads",
    "HttpChannel": "recoverkit.channels.http",
    "MemoryAudience": "recoverkit.channels.audiences",
    "MessengerChannel": "recoverkit.channels.messenger",
    "MetaAudience": "recoverkit.channels.meta",
    "OnsiteChannel": "recoverkit.onsite",
    "Rendered": "recoverkit.templates",
    "RequestSpec": "recoverkit.channels.http",
    "SmtpChannel": "recoverkit.channels.smtp",
    "TemplateError": "recoverkit.templates",
    "Templates": "recoverkit.templates",
    "WebhookChannel": "recoverkit.channels.webhook",
    "WhatsAppChannel": "recoverkit.channels.whatsapp",
    "WhatsAppTemplate": "recoverkit.channels.whatsapp",
}


# Hidden from type checkers, so that they see exactly the names imported above and a misspelt
# `recoverkit.SmptChannel` stays an error in a shop's code instead of typing as anything.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        # PEP 562: only called for names not found in the module; each lazy name is imported once, then cached.
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
