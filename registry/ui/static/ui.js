// Progressive enhancement only: every page works without this file.
// Copy buttons for the pull commands (shown only when the clipboard API is there).
document.addEventListener("DOMContentLoaded", function () {
  if (!navigator.clipboard) return;
  document.querySelectorAll("button.copy").forEach(function (button) {
    var input = document.getElementById(button.dataset.copy);
    if (!input) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(input.value).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      }, function () { input.select(); });
    });
  });
  document.querySelectorAll("input.cmd").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
});
