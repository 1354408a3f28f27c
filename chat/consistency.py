"""Consistency checks for the conversation windows and member sets (registered in ChatConfig.ready()).

A cached window claims to hold every message of its conversation whose id is >= its id floor (the
sentinel `~<id floor>:<version floor>`; 0 means the whole conversation): the check compares exactly
that claim with the database, in id order. A filled member set (it holds `~`) claims to be the
conversation's participants exactly.
"""

import re

from chat.cache import (
    SENTINEL_PREFIX,
    TOMBSTONE_PREFIX,
    ConversationMembersCache,
    ConversationMessagesCache,
    parse_sentinel,
)
from chat.models import Message, Participant
from chat.payloads import message_payload
from core.caching import serializer
from core.consistency import CacheCheck, CheckResult, register, sampled

_CONVERSATION = re.compile(rb"\{conversation:(\d+)\}")


class ConversationWindowCheck(CacheCheck):
    name = "conversation lists"

    def run(self, sample: int | None = None) -> CheckResult:
        cache, result = ConversationMessagesCache(), CheckResult(self.name)
        client = cache.client
        for key in sampled(
            client.scan_iter(match=cache.key_pattern("{conversation:*}:messages"), count=1000), result, sample
        ):
            if client.type(key) != b"zset":  # a fill lease in flight: nothing is served from it
                continue
            members = client.zrangebyscore(key, 0, "+inf")
            if not members or not members[0].startswith(SENTINEL_PREFIX):
                continue
            floors = parse_sentinel(members[0])
            if floors is None:  # no version floor: readers drop it unread
                continue
            floor = floors[0]
            cached = [serializer.loads(m) for m in members[1:] if not m.startswith(TOMBSTONE_PREFIX)]
            conversation_id = int(_CONVERSATION.search(key).group(1))
            rows = Message.objects.filter(conversation_id=conversation_id, id__gte=floor)
            rows = rows.select_related("sender").order_by("id")
            expected = [serializer.loads(serializer.dumps(message_payload(m))) for m in rows]
            result.checked += 1
            if cached != expected:
                result.mismatch(key.decode(), [m["id"] for m in cached], [m["id"] for m in expected])
        return result


class ConversationMembersCheck(CacheCheck):
    name = "conversation members"

    def run(self, sample: int | None = None) -> CheckResult:
        cache, result = ConversationMembersCache(), CheckResult(self.name)
        client = cache.client
        for key in sampled(
            client.scan_iter(match=cache.key_pattern("{conversation:*}:members"), count=1000), result, sample
        ):
            if client.type(key) != b"set":  # a fill lease in flight: nothing is served from it
                continue
            raw = client.smembers(key)
            if b"~" not in raw:
                continue
            cached = sorted(int(member) for member in raw if member != b"~")
            conversation_id = int(_CONVERSATION.search(key).group(1))
            rows = Participant.objects.filter(conversation_id=conversation_id).order_by("user_id")
            expected = list(rows.values_list("user_id", flat=True))
            result.checked += 1
            if cached != expected:
                result.mismatch(key.decode(), cached, expected)
        return result


def register_checks() -> None:
    register(ConversationWindowCheck())
    register(ConversationMembersCheck())
