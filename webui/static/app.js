// modemgw web UI: the live character counter (with the segment limit) and the template choice on Compose,
// live numbers on the Dashboard, Back on error pages, and the notice that the session has ended.
// No libraries, and nothing inline: the pages' Content-Security-Policy allows only scripts from /ui/static.
"use strict";

function csrf() { return document.querySelector('meta[name="csrf-token"]').content; }

// A script's request whose session has ended (a logout in another tab, the session ended by an admin, the user
// disabled, the session expired) is answered 401 with JSON (webui/sessions.py, logged_out). The page says so where
// the person sees it, once, with a link that logs in again and comes back here; the caller stops polling (a page
// that silently stops updating looks like a quiet gateway). True when `response` was such an answer.
async function sessionEnded(response) {
  if (response.status !== 401) return false;
  let login = "/ui/login";
  try {
    const body = await response.json();
    if (body && typeof body.login === "string" && body.login.startsWith("/")) login = body.login;
  } catch (e) { /* not our JSON: the default login page */ }
  if (!document.getElementById("logged-out")) {
    const notice = document.createElement("p");
    notice.id = "logged-out";
    notice.className = "flash logged-out";
    notice.setAttribute("role", "alert");
    const link = document.createElement("a");
    link.href = `${login}?next=${encodeURIComponent(location.pathname + location.search)}`;
    link.textContent = "log in again";
    notice.append("You were logged out — ", link);
    (document.querySelector("main") || document.body).prepend(notice);
  }
  return true;
}
window.modemgwSessionEnded = sessionEnded;  // for messages.js

function setupCounter() {
  const body = document.getElementById("body");
  if (!body || !body.dataset.preview) return;
  const counter = document.getElementById("counter");
  const unicode = document.getElementById("unicode");
  const spin = document.getElementById("spin");
  let timer = null;
  async function update() {
    const form = new FormData();
    form.append("body", body.value);
    for (const name of ["smart", "spintax"]) {
      const box = document.getElementById(name);
      if (box && box.checked) form.append(name, "on");
    }
    const response = await fetch(body.dataset.preview, {
      method: "POST", body: form, headers: {"X-CSRF-Token": csrf(), "Accept": "application/json"}});
    if (await sessionEnded(response)) { counter.textContent = "Logged out: the counter stopped."; return; }
    const info = await response.json();
    if (!response.ok) { counter.textContent = info.error; counter.classList.add("over"); return; }
    const limit = info.max_segments || Number(body.dataset.maxSegments) || 0;
    const over = limit > 0 && info.segments > limit;
    counter.classList.toggle("over", over);
    counter.textContent = `${info.characters} characters · ${info.encoding === "gsm7" ? "GSM-7" : "UCS-2 (Unicode)"}` +
      ` · ${info.segments} segment${info.segments === 1 ? "" : "s"}${limit ? ` (limit ${limit})` : ""}` +
      (over ? " · over the limit: shorten the message" : ` · ${info.remaining} left in the last`);
    unicode.hidden = info.unicode_characters.length === 0;
    unicode.replaceChildren();
    if (!unicode.hidden) {
      unicode.append("Unicode because of: ");
      for (const ch of info.unicode_characters) {
        const mark = document.createElement("mark");
        mark.textContent = ch;
        unicode.append(mark, " ");
      }
    }
    const spinBox = document.getElementById("spintax");
    spin.hidden = !(spinBox && spinBox.checked);
    if (!spin.hidden) spin.textContent = "Preview: " + info.text;
  }
  function later() { clearTimeout(timer); timer = setTimeout(update, 150); }
  body.addEventListener("input", later);
  for (const name of ["smart", "spintax"]) {
    const box = document.getElementById(name);
    if (box) box.addEventListener("change", later);
  }
  // A saved template fills the message and its spintax box (the person may still edit the text).
  const template = document.getElementById("template");
  if (template) {
    template.addEventListener("change", () => {
      const chosen = template.selectedOptions[0];
      if (!chosen || !chosen.value) return;
      body.value = chosen.dataset.body || "";
      const spinBox = document.getElementById("spintax");
      if (spinBox) spinBox.checked = chosen.dataset.spintax === "1";
      later();
    });
  }
  update();
}

function setupLive() {
  const live = document.querySelector("[data-live]");
  if (!live) return;
  let timer = null;
  async function refresh() {
    try {
      const response = await fetch(live.dataset.live, {headers: {"Accept": "application/json"}});
      if (await sessionEnded(response)) { clearInterval(timer); return; }  // nothing more to show until a new login
      if (!response.ok) return;
      const data = await response.json();
      for (const el of document.querySelectorAll("[data-key]")) {
        el.textContent = el.dataset.key.split(".").reduce((o, k) => o[k], data);
      }
      for (const m of data.modems) {
        const card = document.querySelector(`[data-modem="${m.id}"]`);
        if (!card) continue;
        card.querySelector('[data-field="state"]').textContent = m.state;
        for (const k of ["sent", "delivered", "failed"]) card.querySelector(`[data-field="${k}"]`).textContent = m.today[k];
      }
    } catch (e) { /* offline for a moment: try again next time */ }
  }
  timer = setInterval(refresh, 5000);
}

// "Back" on an error page: to the page before, when there is one (the CSP allows no inline script or javascript: link).
function setupBack() {
  for (const link of document.querySelectorAll("a[data-back]")) {
    link.addEventListener("click", (event) => {
      if (history.length > 1) { event.preventDefault(); history.back(); }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => { setupCounter(); setupLive(); setupBack(); });
