/* A profile: GET /api/users/{id}; follow or unfollow it; start a conversation with its owner. */
"use strict";
(function () {
  const { api, showError, clearError, me } = window.themoon;
  const section = document.getElementById("profile");
  const userId = Number(section.dataset.profileId);
  const follow = document.getElementById("follow");

  function render(profile) {
    document.title = `@${profile.username} · themoon`;
    document.getElementById("profile-name").textContent = "@" + profile.username;
    document.getElementById("profile-bio").textContent = profile.bio;
    document.getElementById("profile-followers").textContent = profile.followers;
    document.getElementById("profile-following").textContent = profile.following;
    follow.textContent = profile.followed_by_me ? "Unfollow" : "Follow";
    follow.dataset.following = profile.followed_by_me ? "yes" : "no";
    document.getElementById("profile-actions").hidden = profile.id === me.id;
    section.dataset.loaded = "yes";
  }

  async function load() {
    render(await api("GET", `/users/${userId}`));
  }

  follow.addEventListener("click", async () => {
    clearError();
    try {
      await api(follow.dataset.following === "yes" ? "DELETE" : "POST", `/users/${userId}/follow`);
      await load();
    } catch (error) {
      showError(error);
    }
  });
  document.getElementById("message").addEventListener("click", async () => {
    clearError();
    try {
      // Reuse our two-person conversation when there is one; otherwise start it.
      const mine = await api("GET", "/conversations");
      const pair = (c) => c.participants.length === 2 && c.participants.some((m) => m.id === userId);
      const conversation =
        mine.find(pair) || (await api("POST", "/conversations", { participant_ids: [userId] }));
      location.assign(`/chat/${conversation.id}`);
    } catch (error) {
      showError(error);
    }
  });
  load().catch(showError);
})();
