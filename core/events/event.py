"""The event contract: small, versioned, self-describing, JSON (orjson) on the wire."""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import codec

# Bump when the wire format changes incompatibly; consumers reject schemas they don't know.
SCHEMA_VERSION = 1
KNOWN_SCHEMAS = frozenset({1})


class InvalidEvent(ValueError):
    """Bytes that are not an event we can handle: they go to the dead-letter stream."""


def new_event_id() -> str:
    return uuid.uuid4().hex


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Event:
    """One change to one entity.

    `type` is `<entity>.<change>` (post.created, message.deleted, ...); `version` is the entity's
    version after the change (monotonic per row), which is what lets handlers ignore an older event
    that arrives late; `data` holds the entity ids and only the payload the handlers need.
    """

    type: str
    version: int
    data: dict[str, Any]
    id: str = field(default_factory=new_event_id)
    occurred_at: str = field(default_factory=now_iso)
    schema: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        # The codec the caches use: a value written from an event and one filled from the database
        # are byte-for-byte alike (same datetime format, same Decimal handling).
        return codec.dumps(
            {
                "schema": self.schema,
                "id": self.id,
                "type": self.type,
                "version": self.version,
                "occurred_at": self.occurred_at,
                "data": self.data,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> "Event":
        try:
            fields = codec.loads(raw)
        except codec.DecodeError as exc:
            raise InvalidEvent(f"not JSON: {exc}") from exc
        if not isinstance(fields, dict):
            raise InvalidEvent("an event is a JSON object")
        if fields.get("schema") not in KNOWN_SCHEMAS:
            raise InvalidEvent(f"unknown schema {fields.get('schema')!r}")
        try:
            event = cls(
                type=fields["type"],
                version=fields["version"],
                data=fields["data"],
                id=fields["id"],
                occurred_at=fields["occurred_at"],
                schema=fields["schema"],
            )
        except KeyError as exc:
            raise InvalidEvent(f"missing field {exc}") from exc
        if not isinstance(event.type, str) or "." not in event.type:
            raise InvalidEvent(f"bad type {event.type!r}")
        if not isinstance(event.version, int) or not isinstance(event.data, dict):
            raise InvalidEvent("version must be an integer and data an object")
        return event
