// The evaluation agent's report page: while the investigation (or an answer to a question) works, follow
// its progress through the page's small JSON endpoint and reload once it is done; forms that ask before
// deleting. The page works without it (a <noscript> refresh).
(function () {
  "use strict";

  function follow(box) {
    const bar = box.querySelector("[role=progressbar]");
    const fill = bar.querySelector("span");
    const text = box.querySelector(".progress-text");
    const status = document.getElementById("agent-status");
    let failures = 0;

    async function poll() {
      try {
        const answer = await fetch(box.dataset.progressUrl, {credentials: "same-origin",
          headers: {"Accept": "application/json"}});
        if (!answer.ok) throw new Error(String(answer.status));
        const report = await answer.json();
        failures = 0;
        const max = report.max_steps || 1;
        fill.style.width = (report.working ? Math.min(100, Math.round(100 * report.steps_taken / max)) : 100) + "%";
        bar.setAttribute("aria-valuenow", String(report.steps_taken));
        if (status) { status.textContent = report.status; status.className = "badge " + report.status; }
        text.textContent = report.status === "queued" ? "queued"
          : report.status === "running" ? "investigating" : report.answering ? "answering a question" : report.status;
        for (const el of document.querySelectorAll("[data-field]")) {
          const value = report[el.dataset.field];
          if (value !== undefined && value !== null) el.textContent = String(value);
        }
        if (!report.working) { box.dataset.working = ""; window.location.reload(); return; }
      } catch (e) {
        if (++failures > 5) { text.textContent += " (progress unavailable; reload the page)"; return; }
      }
      setTimeout(poll, 1000);
    }
    setTimeout(poll, 500);
  }

  // A link to a step of an answer (its steps are folded in a <details>): unfold it to show the step.
  function reveal() {
    const id = decodeURIComponent(window.location.hash.slice(1));
    const target = id ? document.getElementById(id) : null;
    if (!target) return;
    let unfolded = false;
    for (let el = target.parentElement; el; el = el.parentElement) {
      if (el.tagName === "DETAILS" && !el.open) { el.open = true; unfolded = true; }
    }
    if (unfolded) target.scrollIntoView();
  }

  document.addEventListener("DOMContentLoaded", () => {
    reveal();
    window.addEventListener("hashchange", reveal);
    for (const box of document.querySelectorAll("#agent-progress[data-working='1']")) follow(box);
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    }
  });
})();
