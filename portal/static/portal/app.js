/* The shell (base.html): a table that scrolls sideways (wider than a phone) can be reached and scrolled
   from the keyboard. While a table or its .table-wrap box overflows, the box is focusable (tabindex="0");
   a wrapper becomes a region named after the table's caption (axe-core: scrollable-region-focusable).
   Without JavaScript the tables still scroll by touch and mouse. */
(function () {
  "use strict";

  function update(box) {
    var scrolls = getComputedStyle(box).overflowX !== "visible" && box.scrollWidth > box.clientWidth + 1;
    var ours = box.hasAttribute("data-scroll-focus");
    if (scrolls && !box.hasAttribute("tabindex")) {
      box.setAttribute("tabindex", "0");
      box.setAttribute("data-scroll-focus", "");
      if (box.tagName !== "TABLE") {
        var caption = box.querySelector("caption");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", (caption && caption.textContent.trim()) || "Table");
      }
    } else if (!scrolls && ours) {
      box.removeAttribute("tabindex");
      box.removeAttribute("data-scroll-focus");
      if (box.tagName !== "TABLE") { box.removeAttribute("role"); box.removeAttribute("aria-label"); }
    }
  }

  function all() { document.querySelectorAll("main .table-wrap, main table").forEach(update); }

  var pending = false;
  function later() {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; all(); });
  }

  document.addEventListener("DOMContentLoaded", all);
  window.addEventListener("resize", later);
  document.addEventListener("toggle", later, true);  /* a <details> opened: its table may overflow */
})();

/* Progress bars: the server gives each fill's width as data-pct (the Content-Security-Policy refuses
   style attributes); set through the CSSOM, which the policy allows. */
(function () {
  "use strict";
  function fill() {
    document.querySelectorAll("[data-pct]").forEach(function (el) {
      var pct = Math.max(0, Math.min(100, parseFloat(el.getAttribute("data-pct")) || 0));
      el.style.width = pct + "%";
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", fill); } else { fill(); }
})();
