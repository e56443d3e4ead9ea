/* The gateway pages: a form with data-confirm="question" asks before it submits (revoke, delete).
   Without JavaScript the form submits at once; the services still decide. */
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
})();
