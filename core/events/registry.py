"""What events do to the cache: the handler base class, the registry, and the one `apply`.

An app subclasses `EventHandler` in its own handlers.py and registers an instance in its
AppConfig.ready(). Both places that run handlers, the commit-time path in the writing process
(publisher, read-your-writes) and the stream consumer in the worker, call `apply(pipe, events)`,
so an event fails the same way in both: its own queued commands are discarded, the rest go through.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from core.events.event import Event

logger = logging.getLogger("core.events")


class EventHandler:
    """What a family of events does to the cache.

    `apply` queues the event's direct cache effects on a pipeline: Redis commands only, no database,
    idempotent (twice = once) and version-aware (an older event never overwrites a newer state),
    because delivery is at least once and in no guaranteed order. It runs in the worker and, right
    after commit, in the writing process too (read-your-writes).
    `after_batch` runs in the worker only, once per batch, for effects that need the database or
    more work than one pipeline should carry (e.g. fanning a post out to many followers' feeds).
    Raising from either fails the events: they are retried, then dead-lettered.
    """

    event_types: tuple[str, ...] = ()

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        raise NotImplementedError

    def after_batch(self, events: Sequence[Event]) -> None:
        return None


class UnknownEventType(LookupError):
    pass


class HandlerRegistry:
    def __init__(self) -> None:
        self._by_type: dict[str, EventHandler] = {}

    def register(self, handler: EventHandler) -> EventHandler:
        for event_type in handler.event_types:
            existing = self._by_type.get(event_type)
            if existing is not None and type(existing) is not type(handler):
                raise ValueError(f"{event_type} already handled by {type(existing).__name__}")
            self._by_type[event_type] = handler
        return handler

    def handler_for(self, event_type: str) -> EventHandler:
        try:
            return self._by_type[event_type]
        except KeyError:
            raise UnknownEventType(f"no handler registered for {event_type!r}") from None

    def handles(self, event_type: str) -> bool:
        return event_type in self._by_type

    def event_types(self) -> list[str]:
        return sorted(self._by_type)


registry = HandlerRegistry()


@dataclass
class Applied:
    """What `apply` queued: per event (same order), the span of pipeline positions its commands
    occupy, or the error that failed it. `collect` adds the errors the commands themselves returned."""

    events: Sequence[Event]
    spans: list[range | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)

    def collect(self, results: Sequence) -> None:
        """Fail each event one of whose commands returned an error (`execute(raise_on_error=False)`)."""
        for index, span in enumerate(self.spans):
            if span is None or self.errors[index] is not None:
                continue
            failed = next((r for r in results[span.start : span.stop] if isinstance(r, Exception)), None)
            if failed is not None:
                self.errors[index] = f"{type(failed).__name__}: {failed}"

    def failed(self) -> list[tuple[Event, str]]:
        return [(event, error) for event, error in zip(self.events, self.errors, strict=True) if error]


def apply(
    pipe: redis.client.Pipeline, events: Sequence[Event], handlers: HandlerRegistry = registry
) -> Applied:
    """Queue every event's direct effects on `pipe`, which must be empty (queue your own commands
    after). An event whose handler raises, or that has no handler, is failed and its commands are
    discarded: when it had queued some, the pipeline is reset and the others are queued again (a
    handler's `apply` only queues commands, so queuing twice is safe). Nothing is executed here.
    """
    if len(pipe):
        raise ValueError("apply() needs an empty pipeline: queue other commands after it")
    errors: list[str | None] = [None] * len(events)
    while True:
        spans: list[range | None] = []
        restart = False
        for index, event in enumerate(events):
            if errors[index] is not None:
                spans.append(None)
                continue
            start = len(pipe)
            try:
                handlers.handler_for(event.type).apply(pipe, event)
            except Exception as exc:
                errors[index] = f"{type(exc).__name__}: {exc}"
                spans.append(None)
                if len(pipe) > start:  # it left commands behind: start again without it
                    pipe.reset()
                    restart = True
                    break
                continue
            spans.append(range(start, len(pipe)))
        if not restart:
            return Applied(events, spans, errors)
