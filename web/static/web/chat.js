/* A live conversation over the chat WebSocket (ws/chat/<id>/, authenticated by the session
   cookie): history and who is online on connect, then messages, typing and presence frames.
   Older pages come from GET /api/conversations/{id}/messages. */
"use strict";
(function () {
  const { api, el, showError, clearError, when, me } = window.themoon;
  const section = document.getElementById("chat");
  const conversationId = Number(section.dataset.conversationId);
  const list = document.getElementById("messages");
  const status = document.getElementById("chat-status");
  const typingLine = document.getElementById("typing");
  const input = document.getElementById("message-body");
  const older = document.getElementById("chat-older");
  const TYPING_SHOWN_MS = 10000; // the server's typing indicator lives 10 s too
  const TYPING_RESEND_MS = 3000;
  const PING_MS = 25000; // presence lives 60 s unless refreshed

  const names = new Map(); // user id -> username
  const online = new Set();
  const typists = new Map(); // user id -> timer that hides their indicator
  let socket = null;
  let retryMs = 500;
  let lastTypingSent = 0;
  let nextCursor = null;
  let cursorParam = "before";

  function messageItem(message) {
    names.set(message.sender_id, message.sender);
    return el(
      "li",
      { class: message.sender_id === me.id ? "message mine" : "message", dataset: { messageId: message.id } },
      el("span", { class: "sender", text: message.sender }),
      el("span", { class: "text", text: message.body }),
      el("time", { class: "muted", datetime: message.created_at, text: when(message.created_at) }),
    );
  }

  function addMessage(message) {
    if (list.querySelector(`[data-message-id="${message.id}"]`)) return; // a reconnect's history
    list.append(messageItem(message));
    list.scrollTop = list.scrollHeight;
    stopTyping(message.sender_id);
  }

  function renderOnline() {
    const shown = [...online].map((id) => (id === me.id ? "you" : "@" + (names.get(id) || id)));
    document.getElementById("online").textContent = shown.join(", ") || "nobody";
  }

  function renderTyping() {
    const who = [...typists.keys()].map((id) => "@" + (names.get(id) || id));
    typingLine.textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
  }

  function stopTyping(userId) {
    clearTimeout(typists.get(userId));
    typists.delete(userId);
    renderTyping();
  }

  const frames = {
    history(frame) {
      for (const message of frame.messages) addMessage(message);
      if (frame.messages.length && older.dataset.ready !== "yes") {
        older.dataset.ready = "yes";
        firstPage().catch(showError);
        api("POST", `/conversations/${conversationId}/read`, {}).catch(() => {});
      }
    },
    online(frame) {
      online.clear();
      for (const id of frame.user_ids) online.add(id);
      renderOnline();
    },
    message(frame) {
      addMessage(frame.message);
    },
    typing(frame) {
      names.set(frame.user_id, frame.username);
      if (!frame.typing) return stopTyping(frame.user_id);
      clearTimeout(typists.get(frame.user_id));
      typists.set(frame.user_id, setTimeout(() => stopTyping(frame.user_id), TYPING_SHOWN_MS));
      renderTyping();
    },
    presence(frame) {
      names.set(frame.user_id, frame.username);
      if (frame.online) online.add(frame.user_id);
      else online.delete(frame.user_id);
      if (!frame.online) stopTyping(frame.user_id);
      renderOnline();
    },
    pong() {},
    error(frame) {
      showError(frame.error);
    },
  };

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws/chat/${conversationId}/`);
    socket.addEventListener("open", () => {
      retryMs = 500;
      status.textContent = "live";
      section.dataset.live = "yes";
    });
    socket.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      const handle = frames[frame.type];
      if (handle) handle(frame);
    });
    socket.addEventListener("close", (event) => {
      section.dataset.live = "no";
      if (event.code === 4401 || event.code === 4403) {
        status.textContent = "closed";
        showError(event.code === 4401 ? "log in again to chat" : "you are not in this conversation");
        return;
      }
      status.textContent = "reconnecting…";
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    });
  }

  document.getElementById("message-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    const body = input.value.trim();
    if (!body) return;
    if (send({ type: "message", body })) {
      input.value = "";
      lastTypingSent = 0;
    } else {
      showError("not connected yet: try again in a moment");
    }
  });
  input.addEventListener("input", () => {
    const now = Date.now();
    if (!input.value) {
      if (lastTypingSent && send({ type: "typing", typing: false })) lastTypingSent = 0;
    } else if (now - lastTypingSent > TYPING_RESEND_MS && send({ type: "typing", typing: true })) {
      lastTypingSent = now;
    }
  });
  /* The cursor for older pages comes from the API's own first page (an opaque `next`, or today's
     `next_before`), never computed here. */
  function remember(page) {
    cursorParam = "next" in page ? "cursor" : "before";
    nextCursor = page.next ?? page.next_before ?? null;
    older.hidden = nextCursor === null;
  }

  async function firstPage() {
    remember(await api("GET", `/conversations/${conversationId}/messages`));
  }

  older.addEventListener("click", async () => {
    try {
      const query = `?${cursorParam}=${encodeURIComponent(nextCursor)}`;
      const page = await api("GET", `/conversations/${conversationId}/messages${query}`);
      const first = list.firstChild;
      for (const message of page.messages || page.items || []) {
        if (!list.querySelector(`[data-message-id="${message.id}"]`)) list.insertBefore(messageItem(message), first);
      }
      remember(page);
    } catch (error) {
      showError(error);
    }
  });

  async function loadTitle() {
    const mine = await api("GET", "/conversations");
    const conversation = mine.find((c) => c.id === conversationId);
    if (!conversation) return;
    for (const member of conversation.participants) names.set(member.id, member.username);
    const others = conversation.participants.filter((m) => m.id !== me.id).map((m) => "@" + m.username);
    document.getElementById("chat-title").textContent = conversation.title || others.join(", ") || "Conversation";
    renderOnline();
  }

  setInterval(() => send({ type: "ping" }), PING_MS);
  loadTitle().catch(showError);
  connect();
})();
