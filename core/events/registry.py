"""What events do to the cache: the handler base class, the registry, and the one `apply`.

An app subclasses `EventHandler` in its own handlers.py and registers an instance in its
AppConfig.ready(); several apps may handle one event type (one handler each, run as one). Both
places that run handlers, the commit-time path in the writing process (publisher, read-your-writes)
and the stream consumer in the worker, call `apply(pipe, events)`, so an event fails the same way in
both: its own queued commands (every app's) are discarded, the rest go through.
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
    `prepare` runs in the writing process only, before its commit-time pipeline is built: the one
    place a handler may read Redis (`apply` only queues), to do more at commit time than the
    events alone allow (e.g. a post's followers' feeds, from a cached follower set). It is an
    optimisation, never needed for correctness: the worker applies the unprepared handler.
    """

    event_types: tuple[str, ...] = ()
    # The app this handler speaks for (one handler per app and type); default: its module's package.
    app_label: str | None = None

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        raise NotImplementedError

    def after_batch(self, events: Sequence[Event]) -> None:
        return None

    def prepare(self, events: Sequence[Event]) -> "EventHandler":
        """The handler to apply `events` with at commit time: `self` (the default), or a copy
        bound to what it read (one round trip for all of them). Raising means "not prepared"."""
        return self


class UnknownEventType(LookupError):
    pass


def _app_of(handler: EventHandler) -> str:
    """The app a handler belongs to: the top-level package of its class (chat, feed, ...)."""
    return handler.app_label or type(handler).__module__.split(".", 1)[0]


class HandlerGroup(EventHandler):
    """The handlers of several apps for one event type, run as one handler.

    `apply` queues each app's effects in registration order; if one raises, the event fails as a
    whole (`apply` below discards every command it queued, the other apps' too), so an event never
    half-applies. `after_batch` runs every app's, then raises the first failure (the events are
    retried: every after_batch is idempotent, so running the others again is harmless)."""

    def __init__(self, handlers: Sequence[EventHandler]) -> None:
        self.handlers = tuple(handlers)
        self.event_types = tuple(sorted({t for h in self.handlers for t in h.event_types}))

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        for handler in self.handlers:
            if event.type in handler.event_types:
                handler.apply(pipe, event)

    def after_batch(self, events: Sequence[Event]) -> None:
        failure: Exception | None = None
        for handler in self.handlers:
            mine = [event for event in events if event.type in handler.event_types]
            if not mine:
                continue
            try:
                handler.after_batch(mine)
            except Exception as exc:
                logger.exception("after_batch of %s failed", type(handler).__name__)
                failure = failure or exc
        if failure is not None:
            raise failure


class HandlerRegistry:
    """Event type -> what handles it: one handler per app and type, several apps per type (a
    `user.updated` concerns chat's windows and feed's posts). Registering the same handler class
    again replaces it (ready() may run twice); a second class of the same app for a type is refused."""

    def __init__(self) -> None:
        self._by_type: dict[str, list[EventHandler]] = {}
        self._resolved: dict[str, EventHandler] = {}

    def register(self, handler: EventHandler) -> EventHandler:
        for event_type in handler.event_types:
            handlers = self._by_type.setdefault(event_type, [])
            for index, existing in enumerate(handlers):
                if _app_of(existing) != _app_of(handler):
                    continue
                if type(existing) is not type(handler):
                    raise ValueError(f"{event_type} already handled by {type(existing).__name__}")
                handlers[index] = handler
                break
            else:
                handlers.append(handler)
            self._resolved[event_type] = handlers[0] if len(handlers) == 1 else HandlerGroup(handlers)
        return handler

    def handler_for(self, event_type: str) -> EventHandler:
        """The one handler to run for `event_type` (a `HandlerGroup` when several apps handle it;
        the same object for every call until the next register, so callers may group by it)."""
        try:
            return self._resolved[event_type]
        except KeyError:
            raise UnknownEventType(f"no handler registered for {event_type!r}") from None

    def handlers_for(self, event_type: str) -> tuple[EventHandler, ...]:
        """Every app's handler for `event_type`, in registration order (() when none)."""
        return tuple(self._by_type.get(event_type, ()))

    def handles(self, event_type: str) -> bool:
        return event_type in self._resolved

    def prepared(self, events: Sequence[Event]) -> "HandlerRegistry":
        """This registry with each handler that `events` concern replaced by its `prepare(its
        events)` (the commit path's registry); `self` when no handler prepared anything. A handler
        whose prepare raises is kept as it is (logged): the worker does what it would have done."""
        concerned: dict[int, tuple[EventHandler, list[Event]]] = {}
        for event in events:
            for handler in self._by_type.get(event.type, ()):
                concerned.setdefault(id(handler), (handler, []))[1].append(event)
        replaced: dict[int, EventHandler] = {}
        for key, (handler, mine) in concerned.items():
            try:
                bound = handler.prepare(mine)
            except Exception:
                logger.exception("prepare of %s failed (applied unprepared)", type(handler).__name__)
                continue
            if bound is not handler:
                replaced[key] = bound
        if not replaced:
            return self
        # Copies of the maps (cheap), rebuilt only for the types a replaced handler handles.
        view = HandlerRegistry()
        view._by_type, view._resolved = dict(self._by_type), dict(self._resolved)
        touched = {t for key in replaced for t in concerned[key][0].event_types}
        for event_type in touched:
            bound_handlers = [replaced.get(id(handler), handler) for handler in self._by_type[event_type]]
            view._by_type[event_type] = bound_handlers
            view._resolved[event_type] = (
                bound_handlers[0] if len(bound_handlers) == 1 else HandlerGroup(bound_handlers)
            )
        return view

    def event_types(self) -> list[str]:
        return sorted(self._resolved)


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
