"""Chat reads through the cache, with the database (chat/queries.py) behind every miss."""

from typing import Any

from chat import queries
from chat.cache import ConversationMembersCache, ConversationMessagesCache

messages = ConversationMessagesCache()
members = ConversationMembersCache()


def is_participant(conversation_id: int, user_id: int) -> bool:
    """Whether the user is in the conversation: the cached member set, the database behind it (a
    removed participant's "yes" ends at the removal's commit; chat/cache.py has the bounds)."""
    return members.is_member(conversation_id, user_id)


def participant_ids(conversation_id: int) -> list[int]:
    return members.members(conversation_id)


def message_page(conversation_id: int, before: int | None, limit: int) -> dict[str, Any]:
    """A page of history, oldest first, and the cursor for the next older page (None: no more).

    The first page comes from the conversation cache (topped up from the database only if deletes
    left the cached window shorter than the page); older pages come from the database by id cursor.
    """
    if before is None:
        window = messages.get_window(conversation_id)
        page = window.messages[-limit:]
        if window.complete:
            has_more = len(window.messages) > limit
        elif len(page) == limit:
            has_more = True
        else:
            need = limit - len(page)
            older = (
                queries.messages_before(conversation_id, page[0]["id"], need + 1)
                if page
                else queries.latest_messages(conversation_id, need + 1)
            )
            has_more = len(older) > need
            page = older[-need:] + page
    else:
        page = queries.messages_before(conversation_id, before, limit + 1)
        has_more = len(page) > limit
        page = page[-limit:]
    return {"messages": page, "next_before": page[0]["id"] if has_more and page else None}
