/* My conversations: GET /api/conversations, each a link to its live page. */
"use strict";
(function () {
  const { api, el, showError, me } = window.themoon;

  function title(conversation) {
    if (conversation.title) return conversation.title;
    const others = conversation.participants.filter((member) => member.id !== me.id);
    return others.map((member) => "@" + member.username).join(", ") || "just you";
  }

  async function load() {
    const list = document.getElementById("conversations");
    const conversations = await api("GET", "/conversations");
    for (const conversation of conversations) {
      const last = conversation.last_message;
      list.append(
        el(
          "li",
          { class: "card", dataset: { conversationId: conversation.id } },
          el("a", { href: `/chat/${conversation.id}`, text: title(conversation) }),
          conversation.unread ? el("span", { class: "chip", text: `${conversation.unread} new` }) : null,
          last ? el("p", { class: "muted", text: `${last.sender}: ${last.body}` }) : null,
        ),
      );
    }
    document.getElementById("conversations-empty").hidden = conversations.length > 0;
  }

  load().catch(showError);
})();
