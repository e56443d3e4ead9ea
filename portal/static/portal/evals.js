// Evaluations: the evaluator editor (template chooser, variables, live preview) and progress bars
// that follow a run by polling its small JSON endpoint. The pages work without it.
(function () {
  "use strict";
  const VARIABLE = /{{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*}}/g;

  function csrf(form) {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function editor(form) {
    const prompt = form.querySelector("#ev-prompt");
    const out = document.getElementById("ev-preview");
    if (!prompt || !out) return;
    const used = document.getElementById("ev-used");
    const source = document.getElementById("ev-preview-source");
    const chooser = form.querySelector("#ev-template");
    const templates = JSON.parse((document.getElementById("templates-data") || {}).textContent || "{}");
    let timer = null, seq = 0;

    function showVariables() {
      const names = [...new Set([...prompt.value.matchAll(VARIABLE)].map((m) => m[1]))];
      used.replaceChildren(...(names.length ? names.flatMap((n, i) => {
        const code = document.createElement("code");
        code.textContent = n;
        return i ? [", ", code] : [code];
      }) : ["none yet"]));
    }

    async function refresh() {
      const mine = ++seq;
      const body = new URLSearchParams();
      for (const name of ["prompt_template", "variables", "trace_id"]) {
        const field = form.elements.namedItem(name);
        if (field) body.set(name, field.value);
      }
      try {
        const answer = await fetch(out.dataset.url, {method: "POST", body, credentials: "same-origin",
          headers: {"X-CSRFToken": csrf(form), "Accept": "application/json"}});
        if (mine !== seq) return;
        const data = await answer.json();
        if (!answer.ok) { source.textContent = data.detail || "The preview is not available."; return; }
        out.textContent = data.preview;
        source.textContent = "Rendered on " + data.source + "." +
          (data.bad_variables.length ? " Not 'name = path': " + data.bad_variables.join("; ") : "");
      } catch (e) {
        if (mine === seq) source.textContent = "The preview is not available right now.";
      }
    }

    function later() {
      showVariables();
      clearTimeout(timer);
      timer = setTimeout(refresh, 300);
    }

    if (chooser) {
      chooser.addEventListener("change", () => {
        const t = templates[chooser.value];
        if (!t) return;
        const set = (name, value) => { const f = form.elements.namedItem(name); if (f) f.value = value; };
        set("prompt_template", t.prompt_template);
        set("variables", t.variables || "");
        set("score_type", t.score_type);
        set("min_value", t.min_value ?? "");
        set("max_value", t.max_value ?? "");
        set("pass_threshold", t.pass_threshold ?? "");
        set("labels", (t.labels || []).join(", "));
        set("pass_labels", (t.pass_labels || []).join(", "));
        set("description", t.description || "");
        const name = form.elements.namedItem("name");
        if (name && !name.value) name.value = chooser.value;
        later();
      });
    }
    for (const name of ["prompt_template", "variables", "trace_id"]) {
      const field = form.elements.namedItem(name);
      if (field) field.addEventListener("input", later);
    }
    const button = form.querySelector("button[name=preview]");
    if (button) button.addEventListener("click", (event) => { event.preventDefault(); refresh(); });
    refresh();
  }

  function follow(box) {
    const bar = box.querySelector("[role=progressbar]");
    const fill = bar.querySelector("span");
    const text = box.querySelector(".progress-text");
    const status = document.getElementById("run-status");
    const done = new Set(["succeeded", "partial", "failed"]);
    let failures = 0;

    async function poll() {
      try {
        const answer = await fetch(box.dataset.progressUrl, {credentials: "same-origin",
          headers: {"Accept": "application/json"}});
        if (!answer.ok) throw new Error(String(answer.status));
        const run = await answer.json();
        failures = 0;
        const total = run.total || 0, processed = run.processed || 0;
        const pct = done.has(run.status) ? 100 : (total ? Math.round(100 * processed / total) : 0);
        fill.style.width = pct + "%";
        bar.setAttribute("aria-valuemax", String(total || 1));
        bar.setAttribute("aria-valuenow", String(done.has(run.status) ? (total || 1) : processed));
        text.textContent = (done.has(run.status) ? run.status + ": " : "") + processed + " of " + (total || "?");
        if (status) { status.textContent = run.status; status.className = "badge " + run.status; }
        for (const el of document.querySelectorAll("[data-field]")) {
          const value = run[el.dataset.field];
          if (value !== undefined && value !== null) {
            el.textContent = el.dataset.field === "mean_score" ? Number(value).toFixed(2)
              : el.dataset.field === "judge_cost" ? Number(value).toFixed(4) : value;
          }
        }
        if (done.has(run.status)) { box.dataset.working = ""; window.location.reload(); return; }
      } catch (e) {
        if (++failures > 5) { text.textContent += " (progress unavailable; reload the page)"; return; }
      }
      setTimeout(poll, 1000);
    }
    setTimeout(poll, 500);
  }

  function confirmations() {
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("evaluator-form");
    if (form) editor(form);
    for (const box of document.querySelectorAll(".run-progress[data-working='1']")) follow(box);
    confirmations();
  });
})();
