// tower-pat's self-service page: the copy button of the show-once page. The page works
// without it (the token is in a read-only field, selected on focus).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[readonly]").forEach(function (field) {
    field.addEventListener("focus", function () { field.select(); });
  });
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById("copy-status");
    if (!field) { return; }
    button.addEventListener("click", function () {
      var done = function (text) { if (status) { status.textContent = text; } };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(
          function () { button.textContent = "Copied"; done("Copied to the clipboard."); },
          function () { field.select(); done("Press Ctrl+C (⌘C) to copy."); }
        );
      } else {
        field.select();
        done("Press Ctrl+C (⌘C) to copy.");
      }
    });
  });
});
