"""The event contract and its plumbing: the `Event` type, publishing after commit (outbox + streams),
the handler registry and the one `apply` both the commit path and the stream consumer run. Import
from here. `core` names no app: apps register their stream domain and their handlers in ready()."""

from core.events.event import Event, InvalidEvent
from core.events.outbox import outbox_backlog, relay_outbox, relay_pass
from core.events.publisher import publish
from core.events.registry import Applied, EventHandler, HandlerRegistry, UnknownEventType, apply, registry
from core.events.streams import all_streams, dead_letter_stream, register_domain, stream_name, trim_streams
from core.versions import FINAL_VERSION

__all__ = [
    "FINAL_VERSION",
    "Applied",
    "Event",
    "EventHandler",
    "HandlerRegistry",
    "InvalidEvent",
    "UnknownEventType",
    "all_streams",
    "apply",
    "dead_letter_stream",
    "outbox_backlog",
    "publish",
    "register_domain",
    "registry",
    "relay_outbox",
    "relay_pass",
    "stream_name",
    "trim_streams",
]
