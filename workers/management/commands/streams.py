"""`python manage.py streams [--replay-dead] [--json]`: the event streams at a glance."""

import json

from django.core.management.base import BaseCommand

from core.connections import stream_client
from core.events import outbox_backlog
from workers.streams_admin import consumer_liveness, dead_letter_count, replay_dead_letters, stream_report


class Command(BaseCommand):
    help = (
        "Print, per event stream: length, consumer groups, consumers (live or dead by their "
        "heartbeats), pending entries, lag; then every consumer seen in the last hour, the "
        "dead-letter count and the outbox backlog. --replay-dead requeues dead letters."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--replay-dead", action="store_true", help="requeue dead-lettered events")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print as JSON")

    def handle(self, *args, replay_dead: bool, as_json: bool, **options) -> None:
        client = stream_client()
        if replay_dead:
            count = replay_dead_letters(client)
            self.stdout.write(self.style.SUCCESS(f"requeued {count} dead-lettered events"))
            return
        report = {
            "streams": stream_report(client),
            "consumers": consumer_liveness(client),
            "dead_letters": dead_letter_count(client),
            "outbox": outbox_backlog(),
        }
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, default=str))
            return
        for stream in report["streams"]:
            self.stdout.write(f"{stream['stream']}: length {stream['length']}")
            if not stream["groups"]:
                self.stdout.write("  no consumer group yet (no worker has started)")
            for group in stream["groups"]:
                self.stdout.write(
                    f"  group {group['name']}: pending {group['pending']}, lag {group['lag']}, "
                    f"last delivered {group['last_delivered_id']}, "
                    f"{len(group['consumers'])} consumers"
                )
                for consumer in group["consumers"]:
                    self.stdout.write(
                        f"    {consumer['name']}: {'live' if consumer['live'] else 'dead'}, "
                        f"pending {consumer['pending']}, idle {consumer['idle_ms'] / 1000:.1f}s"
                    )
        consumers = report["consumers"]
        live = sorted(name for name, state in consumers.items() if state["live"])
        dead = sorted(name for name, state in consumers.items() if not state["live"])
        self.stdout.write(f"consumers: {len(live)} live, {len(dead)} dead")
        for name in live + dead:
            state = consumers[name]
            status = "live" if state["live"] else "dead"
            self.stdout.write(f"  {name}: {status}, last heartbeat {state['seen_ms_ago'] / 1000:.1f}s ago")
        self.stdout.write(f"dead letters: {report['dead_letters']}")
        self.stdout.write(f"outbox backlog: {report['outbox']}")
