"""The openlive server: app, session, turn engine, model backends and the `openlive` command."""

from live.app import create_app
from live.config import Settings, load_settings
from live.services import Services
from live.session import Session, SessionLimits
from live.transport import Transport, TransportClosed
from live.turns import Conversation, TurnEngine, TurnLimits

__all__ = [
    "Conversation",
    "Services",
    "Session",
    "SessionLimits",
    "Settings",
    "Transport",
    "TransportClosed",
    "TurnEngine",
    "TurnLimits",
    "create_app",
    "load_settings",
]
