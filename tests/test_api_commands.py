"""`manage.py streams` tells live consumers from dead ones by their heartbeats (issue 14 item 14)."""

import json
import time

from django.core.management import call_command

from core.connections import stream_client
from core.events import all_streams
from core.events.streams import consumer_heartbeats


def test_streams_tells_live_consumers_from_dead_ones(db, redis_client, settings, capsys):
    client = stream_client()
    stream, group = all_streams()[0], settings.EVENTS_CONSUMER_GROUP
    client.xgroup_create(stream, group, id="0", mkstream=True)
    client.xadd(stream, {"event": b"{}"})
    for name in ("alive-1", "gone-1"):
        client.xgroup_createconsumer(stream, group, name)
    now_ms = int(time.time() * 1000)
    stale_ms = now_ms - settings.HEALTH_CONSUMER_IDLE_MS - 60_000
    client.zadd(consumer_heartbeats(), {"alive-1": now_ms, "gone-1": stale_ms})

    call_command("streams")
    out = capsys.readouterr().out
    assert "alive-1: live" in out
    assert "gone-1: dead" in out
    assert "consumers: 1 live, 1 dead" in out

    call_command("streams", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["consumers"]["alive-1"]["live"] is True
    assert report["consumers"]["gone-1"]["live"] is False
    listed = {c["name"]: c["live"] for g in report["streams"][0]["groups"] for c in g["consumers"]}
    assert listed == {"alive-1": True, "gone-1": False}
