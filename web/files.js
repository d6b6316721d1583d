// File sharing on the page: an attach button and drag-and-drop, uploads with progress that can be
// cancelled, and a message's files shown: images as thumbnails that open full size, other files
// as a name and size that download.

import { $, el, button, clear } from "./view.js";

function enc(part) {
  return encodeURIComponent(part);
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// Why an upload failed, for a person.
function failure(status, answer) {
  const code = answer?.error?.code;
  if (code === "too_large") return `too large: ${answer.error.message}`;
  if (code === "quota_exceeded") return "your storage is full: delete some files first";
  if (code === "rate_limited") return "too many uploads: wait a minute";
  return answer?.error ? `${answer.error.code}: ${answer.error.message}` : `HTTP ${status}`;
}

export class Files {
  constructor({ api, session, client, current }) {
    Object.assign(this, { api, session, client, current });
    $("attach").addEventListener("click", () => $("attach-input").click());
    $("attach-input").addEventListener("change", () => {
      for (const file of $("attach-input").files) this.upload(file);
      $("attach-input").value = "";
    });
    const room = document.querySelector(".room");
    room.addEventListener("dragover", (event) => {
      event.preventDefault();
      room.classList.add("dropping");
    });
    room.addEventListener("dragleave", () => room.classList.remove("dropping"));
    room.addEventListener("drop", (event) => {
      event.preventDefault();
      room.classList.remove("dropping");
      for (const file of event.dataTransfer?.files ?? []) this.upload(file);
    });
  }

  // Where a file (or its thumbnail) is fetched from; the URL authenticates as the WebSocket does.
  url(id, thumbnail = false) {
    const url = this.api.url(`attachments/${enc(id)}${thumbnail ? "/thumbnail" : ""}`);
    if (this.session.token) url.searchParams.set("token", this.session.token);
    return url.href;
  }

  // Uploads `file` into the room on show, then sends a chat that carries it.
  upload(file) {
    const room = this.current();
    if (!room) return;
    const row = el("li", "upload", `${file.name} (${size(file.size)}) `);
    const progress = el("progress");
    progress.max = file.size || 1;
    progress.value = 0;
    const request = new XMLHttpRequest();
    const cancel = button(`Cancel ${file.name}`, () => request.abort());
    row.append(progress, cancel);
    $("uploads").append(row);
    request.open("POST", this.api.url(`rooms/${enc(room)}/attachments`, { name: file.name }));
    if (this.session.token) request.setRequestHeader("Authorization", `Bearer ${this.session.token}`);
    request.upload.onprogress = (event) => {
      progress.value = event.loaded;
    };
    const done = (text) => {
      clear(row);
      row.append(el("span", "error", `${file.name}: ${text}`), button("Dismiss", () => row.remove()));
    };
    request.onabort = () => done("cancelled");
    request.onerror = () => done("the upload failed: check the connection and try again");
    request.onload = () => {
      let answer = null;
      try {
        answer = JSON.parse(request.responseText);
      } catch {
        answer = null;
      }
      if (request.status !== 201) return done(failure(request.status, answer));
      row.remove();
      this.client.send(room, { content: "", attachments: [answer.id] });
    };
    request.send(file);
  }

  // A message's files, under its text.
  render(item, files) {
    if (!Array.isArray(files) || files.length === 0) return;
    const list = el("span", "files");
    for (const file of files) {
      if (typeof file?.id !== "string") continue;
      const link = el("a", "file");
      link.href = this.url(file.id);
      link.target = "_blank";
      link.rel = "noopener";
      if (file.width && file.type?.startsWith("image/")) {
        const image = el("img", "thumbnail");
        image.src = this.url(file.id, true);
        image.alt = file.name;
        link.append(image);
      } else {
        link.download = file.name;
        link.textContent = `${file.name} (${size(file.size)})`;
      }
      list.append(link);
    }
    item.querySelector(".text").after(list);
  }
}
