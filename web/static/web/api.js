/* The one door to the server for every page: JSON over /api/ with the session cookie, plus the
   few DOM helpers the pages share. Plain script, no build step; other scripts use window.themoon. */
"use strict";
(function () {
  function cookie(name) {
    const found = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  /* fetch JSON; unsafe methods carry the CSRF token the session needs. Throws ApiError. */
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRFToken"] = cookie("csrftoken");
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch("/api" + path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && document.body.dataset.page !== "login") {
      location.assign("/login?next=" + encodeURIComponent(location.pathname));
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const detail = data && data.detail;
      throw new ApiError(response.status, typeof detail === "string" ? detail : "request failed (" + response.status + ")");
    }
    return data;
  }

  /* An element with text content only (never HTML from the server: bodies are user input). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function showError(error) {
    const box = document.getElementById("error");
    box.textContent = error instanceof Error ? error.message : String(error);
    box.hidden = false;
  }

  function clearError() {
    document.getElementById("error").hidden = true;
  }

  function when(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleString();
  }

  const me = {
    id: Number(document.body.dataset.userId) || null,
    username: document.body.dataset.username || null,
  };

  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      try {
        await api("POST", "/auth/logout");
      } finally {
        location.assign("/login");
      }
    });
  }

  window.themoon = { api, ApiError, el, showError, clearError, when, me };
})();
