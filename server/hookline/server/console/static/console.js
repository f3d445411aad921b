// Live updates: an element with data-live="URL" follows that server-sent event
// stream. Each "update" event carries parts of the page rendered by the server
// (escaped there): a part replaces the element with its id, or, when it is new
// and names a container, goes first in it. EventSource reconnects by itself and
// sends the last event id, from which the server resumes without a gap.
"use strict";

function applyParts(parts) {
  for (const part of parts) {
    const template = document.createElement("template");
    template.innerHTML = part.html;
    const node = template.content.firstElementChild;
    const existing = document.getElementById(part.id);
    if (existing) {
      existing.replaceWith(node);
    } else if (part.into) {
      const container = document.getElementById(part.into);
      if (container) {
        container.prepend(node);
        const empty = document.getElementById("no-" + part.into);
        if (empty) empty.hidden = true;
      }
    }
  }
}

function follow(element) {
  const status = document.getElementById("live-status");
  const source = new EventSource(element.dataset.live);
  source.addEventListener("update", (event) => applyParts(JSON.parse(event.data)));
  source.addEventListener("open", () => { status.hidden = true; });
  source.addEventListener("failed", (event) => {
    source.close();
    status.textContent = "Live updates stopped: " + JSON.parse(event.data).message + " Reload the page to start again.";
    status.hidden = false;
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      status.textContent = "Live updates stopped. Reload the page to start again.";
      status.hidden = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll("[data-live]")) follow(element);
});
