"""One send of events to their streams, with their direct cache effects: the round trip that the
commit-time publisher and the outbox relay share.

When the cache and the events share a server (`core.connections.roles_shared`) it is ONE
pipeline: the effects, the XADDs, the sent marks. When they are two servers it is two pipelines,
events first: the XADDs and marks on the events server, then the effects on the cache. A failure
of the cache one never un-sends the events (they are in their streams; the worker applies them
again), it only comes back in `Delivery.effects_error` for the caller to act on.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from core.connections import UNAVAILABLE, cache_client, events_client, roles_shared
from core.events.event import Event
from core.events.registry import Applied, HandlerRegistry, apply, registry
from core.events.streams import EVENT_FIELD


@dataclass
class Delivery:
    """What came back: per entry, its XADD's result (an entry id, or the error Redis answered);
    the effects queued (None when none were asked for) and, with two servers, the connection error
    that failed the whole effects pipeline."""

    xadds: list
    effects: Applied | None
    effects_error: Exception | None = None
    # With `confirm_ms`: per command `queue_marks` queued, whether a replica confirmed it (WAIT).
    marks_replicated: list[bool] | None = None

    def refused(self) -> list[int]:
        """Indexes of the entries whose XADD Redis refused."""
        return [index for index, result in enumerate(self.xadds) if isinstance(result, Exception)]


def deliver(
    entries: Sequence[tuple[str, bytes]],
    events: Sequence[Event] | None = None,
    marks: Sequence = (),
    handlers: HandlerRegistry = registry,
    queue_marks=None,
    confirm_ms: int | None = None,
) -> Delivery:
    """XADD each `(stream, payload)`; queue `marks` with `queue_marks(pipe, marks)`; apply the
    direct effects of `events` (those with a handler), in one or two round trips (module docstring).
    `confirm_ms`: end each events node's pipeline with `WAIT 1 confirm_ms` (`Batch.confirm_replicas`)
    and report in `marks_replicated` which of the marks' commands a replica has.

    Raises redis.ConnectionError / TimeoutError when the events round trip failed: then nothing is
    known to be sent (an XADD may have landed; delivery is at least once). Never raises for the
    cache round trip of a two-server setup (`effects_error`).
    """
    events_pipe = events_client().pipeline(transaction=False)
    shared = roles_shared()
    effects = None
    handled = None if events is None else [event for event in events if handlers.handles(event.type)]
    if shared and handled is not None:
        effects = apply(events_pipe, handled, handlers)
    first = len(events_pipe)
    for stream, payload in entries:
        events_pipe.xadd(
            stream, {EVENT_FIELD: payload}, maxlen=settings.EVENTS_STREAM_MAXLEN, approximate=True
        )
    if marks and queue_marks is not None:
        queue_marks(events_pipe, marks)
    if confirm_ms:
        events_pipe.confirm_replicas(1, confirm_ms)
    results = events_pipe.execute(raise_on_error=False)
    delivery = Delivery(results[first : first + len(entries)], effects)
    if confirm_ms:
        delivery.marks_replicated = events_pipe.replicated[first + len(entries) :]
    if shared:
        if effects is not None:
            effects.collect(results)
        return delivery
    if handled is not None:
        cache_pipe = cache_client().pipeline(transaction=False)
        delivery.effects = apply(cache_pipe, handled, handlers)
        try:
            if len(cache_pipe):
                delivery.effects.collect(cache_pipe.execute(raise_on_error=False))
        except UNAVAILABLE as exc:
            delivery.effects_error = exc
    return delivery
