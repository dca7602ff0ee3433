// The admin's periodic task form (django-celery-beat): under the crontab field, what the chosen
// crontab means in words. django-celery-beat does this from an inline script, which the page's
// Content-Security-Policy refuses; this file does the same with text nodes only.
"use strict";
(function () {
  const data = document.getElementById("readable-crontabs");
  const select = document.getElementById("id_crontab");
  const help = document.querySelector(".field-crontab .help");
  if (!data || !select || !help) {
    return;
  }
  const readable = JSON.parse(data.textContent);
  const translation = document.createElement("div");
  translation.className = "crontab-translation";
  help.appendChild(translation);
  const show = () => {
    const words = readable[select.value];
    translation.textContent = words ? `Translation: ${words}` : "";
  };
  document.querySelectorAll(".field-crontab_translation").forEach((row) => {
    row.style.display = "none";
  });
  select.addEventListener("change", show);
  show();
})();
