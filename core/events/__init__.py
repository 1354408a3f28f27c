"""The event contract and its publishing. Import from here."""

from core.events.event import Event, InvalidEvent
from core.events.outbox import outbox_backlog, relay_outbox
from core.events.publisher import add_commit_listener, publish
from core.events.streams import all_streams, dead_letter_stream, stream_name, trim_streams

__all__ = [
    "Event",
    "InvalidEvent",
    "add_commit_listener",
    "all_streams",
    "dead_letter_stream",
    "outbox_backlog",
    "publish",
    "relay_outbox",
    "stream_name",
    "trim_streams",
]
