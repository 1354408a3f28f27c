/* The login page: POST /api/auth/login starts a session; "Create an account" registers first. */
"use strict";
(function () {
  const { api, showError, clearError } = window.themoon;
  const form = document.getElementById("login-form");

  function credentials() {
    return { username: form.username.value.trim(), password: form.password.value };
  }

  function destination() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    // Only a path on this site: never an open redirect to another host.
    return next.startsWith("/") && !next.startsWith("//") ? next : "/";
  }

  async function enter(register) {
    clearError();
    if (!form.reportValidity()) return;
    try {
      if (register) await api("POST", "/auth/register", credentials());
      await api("POST", "/auth/login", credentials());
      location.assign(destination());
    } catch (error) {
      showError(error);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    enter(false);
  });
  document.getElementById("register").addEventListener("click", () => enter(true));
})();
