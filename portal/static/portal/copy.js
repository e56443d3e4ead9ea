/* Copy to the clipboard: any <button data-copy="#id"> copies the text of the element it names (or
   data-copy-text="..." copies that text). Buttons are rendered `hidden` and shown here, so a page
   without JavaScript shows no button that does nothing. The result is announced in the page's
   `.copy-status` live region (when it has one) and on the button for two seconds. */
(function () {
  "use strict";

  function announce(button, text) {
    var status = document.querySelector(".copy-status");
    if (status) { status.textContent = text; }
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = text;
    window.setTimeout(function () { button.textContent = label; }, 2000);
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    document.body.removeChild(area);
    return done;
  }

  function copy(button) {
    var text = button.getAttribute("data-copy-text");
    if (text === null) {
      var target = document.querySelector(button.getAttribute("data-copy"));
      if (!target) { return; }
      text = (target.value !== undefined && target.tagName !== "BUTTON") ? target.value : target.textContent;
      text = text.trim();
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { announce(button, "Copied"); },
        function () { announce(button, fallbackCopy(text) ? "Copied" : "Copy failed: select the text"); });
    } else {
      announce(button, fallbackCopy(text) ? "Copied" : "Copy failed: select the text");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy], button[data-copy-text]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { copy(button); });
    });
  });
})();
