/* One post as a card: author, body, reaction counts (click to react), comments (open to read
   and add). Used by the feed page; every change goes through the public API. */
"use strict";
(function () {
  const { api, el, showError, when } = window.themoon;
  const KINDS = { like: "👍", love: "❤️", laugh: "😂", wow: "😮", sad: "😢", angry: "😠" };

  function renderCounts(card, counts) {
    if (!counts) return;
    for (const [kind, emoji] of Object.entries(KINDS)) {
      const button = card.querySelector(`.react[data-kind="${kind}"]`);
      button.textContent = `${emoji} ${counts.reactions[kind] || 0}`;
    }
    card.querySelector(".comment-count").textContent = `💬 ${counts.comments}`;
  }

  function commentItem(comment) {
    return el(
      "li",
      { class: "comment", dataset: { commentId: comment.id } },
      el("a", { href: `/users/${comment.author_id}`, text: comment.author }),
      " ",
      el("span", { text: comment.body }),
    );
  }

  async function loadComments(card, postId, cursor) {
    const list = card.querySelector(".comments");
    const more = card.querySelector(".comments-more");
    const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
    const page = await api("GET", `/posts/${postId}/comments${query}`);
    for (const comment of page.items) list.append(commentItem(comment));
    const next = page.next ?? page.next_cursor;  // one cursor name across the API is coming
    more.hidden = next === null || next === undefined;
    more.onclick = () => loadComments(card, postId, next).catch(showError);
  }

  function postCard(post) {
    const card = el("article", { class: "card post", dataset: { postId: post.id } });
    const reactions = el("div", { class: "row reactions" });
    for (const kind of Object.keys(KINDS)) {
      reactions.append(
        el("button", {
          type: "button",
          class: "react chip",
          title: kind,
          dataset: { kind },
          onclick: async () => {
            try {
              const result = await api("POST", `/posts/${post.id}/reactions`, { kind });
              renderCounts(card, result.counts);
            } catch (error) {
              showError(error);
            }
          },
        }),
      );
    }
    const commentsBox = el(
      "div",
      { class: "comments-box", hidden: true },
      el("ul", { class: "comments" }),
      el("button", { type: "button", class: "comments-more secondary", hidden: true, text: "More comments" }),
      el(
        "form",
        { class: "comment-form row" },
        el("input", { name: "body", class: "comment-body", maxlength: 5000, placeholder: "Add a comment", required: true }),
        el("button", { type: "submit", text: "Comment" }),
      ),
    );
    const toggle = el("button", {
      type: "button",
      class: "comment-count chip",
      onclick: async () => {
        commentsBox.hidden = !commentsBox.hidden;
        if (!commentsBox.hidden && !commentsBox.dataset.loaded) {
          commentsBox.dataset.loaded = "yes";
          await loadComments(card, post.id, 0).catch(showError);
        }
      },
    });
    reactions.append(toggle);
    commentsBox.querySelector("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = event.target.body;
      try {
        const comment = await api("POST", `/posts/${post.id}/comments`, { body: input.value });
        card.querySelector(".comments").append(commentItem(comment));
        input.value = "";
        const fresh = await api("GET", `/posts/${post.id}`);
        renderCounts(card, fresh.counts);
      } catch (error) {
        showError(error);
      }
    });
    card.append(
      el(
        "header",
        { class: "row spread" },
        el("a", { class: "author", href: `/users/${post.author_id}`, text: "@" + post.author }),
        el("time", { datetime: post.created_at, text: when(post.created_at), class: "muted" }),
      ),
      el("p", { class: "body", text: post.body }),
      reactions,
      commentsBox,
    );
    renderCounts(card, post.counts);
    return card;
  }

  window.themoon.postCard = postCard;
})();
