// gymbox view: the only script, served locally. Toggles sections (the token view) by their button.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-target]");
  if (!button) return;
  const section = document.getElementById(button.dataset.target);
  section.hidden = !section.hidden;
  button.classList.toggle("on", !section.hidden);
});
