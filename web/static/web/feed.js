/* The feed page: GET /api/feed (newest first, with counts), POST /api/posts. */
"use strict";
(function () {
  const { api, showError, clearError, postCard } = window.themoon;
  const list = document.getElementById("feed");
  const more = document.getElementById("feed-more");
  const empty = document.getElementById("feed-empty");
  let next = null;

  // Today the feed pages by number (`page`, `next_page`); an opaque `cursor`/`next` works the same way.
  function query(cursor) {
    if (cursor === null) return "";
    return typeof cursor === "number" ? `?page=${cursor}` : `?cursor=${encodeURIComponent(cursor)}`;
  }

  async function load(cursor) {
    const page = await api("GET", "/feed" + query(cursor));
    if (cursor === null) list.replaceChildren();
    for (const post of page.items) list.append(postCard(post));
    next = page.next ?? page.next_page ?? null;
    more.hidden = next === null;
    empty.hidden = list.children.length > 0;
    list.dataset.loaded = String(Date.now());  // lets a reader (or a test) know a load finished
  }

  document.getElementById("post-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const input = document.getElementById("post-body");
    try {
      const post = await api("POST", "/posts", { body: input.value });
      input.value = "";
      list.prepend(postCard(post));
      empty.hidden = true;
    } catch (error) {
      showError(error);
    }
  });
  document.getElementById("feed-refresh").addEventListener("click", () => load(null).catch(showError));
  more.addEventListener("click", () => load(next).catch(showError));
  load(null).catch(showError);
})();
