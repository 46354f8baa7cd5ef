// modemgw web UI: live statuses on Messages and on a message's page, without reloading the list.
// The page marks each message that may still change with data-pending (its status badge with data-status) and
// names the status endpoint on an element with data-status-url (and the statuses that never change again in
// data-settled). Every few seconds the pending ids are asked about; a changed badge is updated in place, and a
// message that has settled is asked about no more. A message's own page (data-reload-on-change) reloads when its
// status changes, so that its timeline and parts follow. When the session has ended (401), the page says so with a
// link to log in again (app.js) and stops asking. No libraries, nothing inline: the pages' CSP allows only scripts
// from /ui/static.
"use strict";

(function () {
  const POLL_MS = 2500;

  function setup() {
    const source = document.querySelector("[data-status-url]");
    if (!source) return;
    const url = source.dataset.statusUrl;
    const settled = new Set((source.dataset.settled || "").split(" ").filter(Boolean));
    const reloadOnChange = source.hasAttribute("data-reload-on-change");

    // 401: the session has ended; app.js shows the notice with its link to log in again.
    async function loggedOut(response) {
      if (response.status !== 401) return false;
      if (typeof window.modemgwSessionEnded === "function") await window.modemgwSessionEnded(response);
      return true;
    }

    function badgeOf(element) {
      return element.matches("[data-status]") ? element : element.querySelector("[data-status]");
    }

    async function poll() {
      const pending = Array.from(document.querySelectorAll("[data-message-id][data-pending]"));
      if (pending.length === 0) return;  // everything shown has settled: nothing more to ask
      try {
        const ids = pending.map((element) => element.dataset.messageId).join(",");
        const response = await fetch(`${url}?ids=${encodeURIComponent(ids)}`,
                                     {headers: {"Accept": "application/json"}, credentials: "same-origin"});
        if (await loggedOut(response)) return;  // the session has ended: say so (app.js) and ask no more
        if (response.ok) {
          const data = await response.json();
          for (const element of pending) {
            const status = data.statuses[element.dataset.messageId];
            if (!status) continue;  // deleted meanwhile
            const badge = badgeOf(element);
            if (badge && badge.textContent !== status) {
              if (reloadOnChange) { window.location.reload(); return; }
              badge.textContent = status;
              badge.className = `status ${status}`;
            }
            if (settled.has(status)) element.removeAttribute("data-pending");
          }
        }
      } catch (error) { /* offline for a moment: ask again next time */ }
      window.setTimeout(poll, POLL_MS);
    }

    window.setTimeout(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", setup);
})();
