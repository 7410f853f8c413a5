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

from .background import BackgroundEngine
from .cart import CartLine, CartSnapshot
from .catalogue import Catalogue, Product, StaticCatalogue, Suggestion
from .channels import (
    Channel,
    ConsoleChannel,
    HttpChannel,
    JsonLinesChannel,
    MemoryChannel,
    Message,
    Recipient,
    RequestSpec,
    SmtpChannel,
    WebhookChannel,
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
from .templates import Rendered, TemplateError, Templates

__version__ = "0.2.0"

__all__ = [
    "EVENT_KINDS",
    "Assessment",
    "BackgroundEngine",
    "Cap",
    "CartLine",
    "CartSnapshot",
    "Catalogue",
    "Channel",
    "ChannelPolicy",
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
    "MemoryChannel",
    "MemoryLoyalty",
    "MemoryStore",
    "Message",
    "MissingExtraError",
    "ModelScorer",
    "NotGranted",
    "Offer",
    "OfferSpec",
    "OfferStatistics",
    "PermanentDeliveryError",
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
    "__version__",
    "decode_event",
    "encode_event",
    "load_config",
    "load_model",
]
