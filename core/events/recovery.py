"""Read-your-writes across a partition: a process that may have missed its own cache effects reads
from the database until it has sent and applied them itself.

A process is *recovering* from the moment it saw Redis fail: its commit-time send failed (the
events wait in the outbox), the cache effects of a send failed, or any guarded cache call failed
(the breaker's failure burst). While recovering, the cache breaker is held open: every cache read
of this process goes to the database, which already has its writes. A background thread (never a
request) waits for the breaker's backoff, then for both servers to answer, then:
1. relays the outbox (`relay_pass`, min age 0, SKIP LOCKED) with the events' cache effects, until
   drained or for EVENTS_RELAY_PASS_SECONDS per pass, again and again until drained;
2. applies the cache effects of this process's own events it still holds in memory (those another
   relay sent without effects, and those whose effects failed after a successful send);
3. releases the breaker, unless something failed again meanwhile (then it goes round again).
Effects are compare-and-set (an older version never overwrites a newer one, and an event never
creates an entry), so applying them late, twice or out of order is harmless.

Bound for a process that saw no failure (another web process): it reads the cache as usual, so
it serves the previous version of an entity another process wrote during the partition until
that event is applied: by the writer's own drain once it reaches Redis, else by a worker's relay
(rows older than EVENTS_OUTBOX_RELAY_AGE_SECONDS, every EVENTS_RELAY_INTERVAL_SECONDS) plus the
consumer's lag. README, "Read your writes".
"""

import logging
import os
import threading
import time
from collections.abc import Sequence

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from core.caching.breaker import breaker
from core.connections import UNAVAILABLE, cache_client, events_client, roles_shared
from core.events.event import Event
from core.events.outbox import outbox_rows_before, relay_pass

logger = logging.getLogger("core.events")

# Own events kept in memory for step 2; past this, the oldest are forgotten (they are in the
# outbox or the streams: the relay's effects or the worker apply them; the README's bound).
MAX_OWN_EVENTS = 10_000


class Recovery:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._own: list[Event] = []
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.using = DEFAULT_DB_ALIAS

    @property
    def recovering(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def note_failure(self) -> None:
        """This process saw Redis fail: read from the database until recovered."""
        self._note(())

    def note_unsent(self, events: Sequence[Event], using: str = DEFAULT_DB_ALIAS) -> None:
        """Events of this process whose send (or whose cache effects) failed."""
        self.using = using
        self._note(events)

    def _note(self, events: Sequence[Event]) -> None:
        with self._lock:  # with the thread's release: a hold after a release, never before it
            breaker.hold()
            self._generation += 1
            if events and settings.EVENTS_APPLY_ON_COMMIT:
                self._own.extend(events)
                del self._own[:-MAX_OWN_EVENTS]
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._wake.clear()
                self._thread = threading.Thread(target=self._run, name="events-recovery", daemon=True)
                self._thread.start()

    def redis_answered(self, using: str = DEFAULT_DB_ALIAS) -> None:
        """A send just succeeded while recovering: relay one batch now, in the commit (bounded:
        EVENTS_OUTBOX_RELAY_BATCH rows), and wake the drain thread for the rest."""
        try:
            relay_pass(
                min_age_seconds=0, using=using, max_batches=1, apply_effects=settings.EVENTS_APPLY_ON_COMMIT
            )
        except Exception:
            logger.exception("outbox drain after a Redis outage failed; the recovery thread retries")
        self._wake.set()

    def reset(self, timeout: float = 5.0) -> None:
        """Stop the drain thread and forget the state (tests)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            self._own.clear()
            self._thread = None
        breaker.release()

    # --- the drain thread --------------------------------------------------------------------

    def _run(self) -> None:
        backoff = max(breaker.backoff, 0.05)
        try:
            while not self._stop.is_set():
                self._wake.wait(backoff)
                self._wake.clear()
                if self._stop.is_set():
                    return
                with self._lock:
                    generation = self._generation
                try:
                    done = self._drain_once()
                except UNAVAILABLE as exc:
                    logger.info("events recovery: redis not answering yet (%s)", exc)
                    backoff = min(backoff * 2, 2.0)
                    continue
                except Exception:
                    logger.exception("events recovery: drain failed; retrying")
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                with self._lock:
                    if done and generation == self._generation:
                        self._thread = None
                        breaker.release()
                        logger.info("events recovery: outbox drained, cache back in use")
                        return
        finally:
            connections.close_all()  # this thread's database connections

    def _drain_once(self) -> bool:
        """One pass: True when the outbox was drained and own effects applied."""
        events_client().ping()
        if not roles_shared():
            cache_client().ping()
        started = timezone.now()
        sent, drained = relay_pass(
            min_age_seconds=0,
            using=self.using,
            max_seconds=settings.EVENTS_RELAY_PASS_SECONDS,
            apply_effects=settings.EVENTS_APPLY_ON_COMMIT,
        )
        if sent:
            logger.info("events recovery: relayed %d outbox events", sent)
        with self._lock:
            own, self._own = self._own, []
        if own:
            self._apply(own)
        # Rows another relay holds (SKIP LOCKED hid them) are not ours to skip: wait until it has
        # sent them, so that our first cache read comes after their effects (a web relay applies
        # them in its transaction; a worker's relay leaves them to the consumer: its lag).
        return drained and not outbox_rows_before(started, self.using)

    def _apply(self, events: list[Event]) -> None:
        from core.events.registry import apply, registry

        pipe = cache_client().pipeline(transaction=False)
        effects = apply(pipe, [event for event in events if registry.handles(event.type)])
        try:
            if len(pipe):
                effects.collect(pipe.execute(raise_on_error=False))
        except UNAVAILABLE:
            with self._lock:
                self._own[:0] = events
            raise
        for event, error in effects.failed():
            logger.warning("events recovery: effect failed: event_id=%s error=%s", event.id, error)

    def _after_fork(self) -> None:
        """In a forked child (Celery's prefork pool): the drain thread stayed in the parent. Start
        one of our own if the parent was recovering, so that the copied hold is released here too."""
        self._lock = threading.Lock()
        was_recovering, self._thread = self._thread is not None, None
        if was_recovering:
            self._note(())


recovery = Recovery()
os.register_at_fork(after_in_child=recovery._after_fork)


def install() -> None:
    """Enter recovery on every failure burst of the cache breaker (CoreConfig.ready)."""
    breaker.on_failure(recovery.note_failure)


def wait_recovered(timeout: float) -> bool:
    """Block until this process is not recovering (tests, shutdown). True when recovered."""
    deadline = time.monotonic() + timeout
    while recovery.recovering and time.monotonic() < deadline:
        time.sleep(0.01)
    return not recovery.recovering
