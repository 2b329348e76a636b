// The dashboard reads without this script; it adds confirmation prompts and readable sizes.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  for (const cell of document.querySelectorAll("[data-bytes]")) {
    let value = Number(cell.dataset.bytes), unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    cell.textContent = unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} B`;
  }
});
