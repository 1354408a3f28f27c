"""Structured logs: what an operator greps at 3 a.m. (health and metrics: tests/test_ops.py)."""

import logging

import orjson

from core.events import Event, stream_name
from core.events.streams import EVENT_FIELD
from core.logs import JsonFormatter
from feed import events
from workers.consumer import StreamConsumer


def test_dead_letter_log_line_carries_the_event_id_as_a_field(transactional_db, redis_client, caplog):
    event = Event(events.POST_UPDATED, 2, {"no": "post"})
    redis_client.xadd(stream_name(events.DOMAIN), {EVENT_FIELD: event.encode()})
    consumer = StreamConsumer(name="logger")
    consumer.max_deliveries = 1
    consumer.ensure_groups()
    with caplog.at_level(logging.ERROR, logger="workers.consumer"):
        consumer.process(consumer.read(pending=False))
    record = next(r for r in caplog.records if "dead-lettered" in r.getMessage())
    line = orjson.loads(JsonFormatter().format(record))
    assert line["event_id"] == event.id
    assert line["event_type"] == events.POST_UPDATED
    assert line["level"] == "ERROR"
