// The page's behaviour: send a photo as a task, then follow each task with
// GET /?task_id=N until it is ready or failed: a few at a time held by the server
// (`Prefer: wait`, so a task's end shows at once), the others as the API asks (Retry-After).
// Plain JavaScript, same-origin calls only. Task numbers are kept in localStorage so the
// list survives a reload; the API key (when the server asks for one) in sessionStorage.
"use strict";

(() => {
  const TASKS_KEY = "photo-tasks.tasks";
  const API_KEY = "photo-tasks.api-key";

  const $ = (id) => document.getElementById(id);
  const taskForm = $("task-form");
  const keyForm = $("key-form");
  const photo = $("photo");
  const drop = $("drop");
  const list = $("tasks");
  const tasks = new Map(); // task number -> {id, kind, title, el, timer}
  // Held GETs at once: each keeps one of the browser's few connections to the server busy,
  // so a handful leaves room for uploads and images. A GET is held for as long as the
  // previous answer's Retry-After (at most MAX_WAIT s), so progress shows as often as
  // polling would show it, and the end at once.
  const MAX_HELD = 3;
  const MAX_WAIT = 10;
  let held = 0;

  // What a failed request means to a person, by HTTP status; the API's error.message follows.
  const LEADS = {
    400: "Please check the form",
    413: "That photo is too large",
    415: "That file is not a photo this service can read",
    422: "That photo cannot be used",
    429: "Too many requests; wait a moment and try again",
    503: "The service is busy or restarting; try again in a moment",
    507: "There is no room to keep this photo",
  };

  // The refusals that share the service fairly, by error code, in words (docs/fair-sharing.md).
  const REFUSALS = {
    too_many_tasks: "You already have as many tasks waiting as one person may; send more once some have finished",
    rate_limited: "You are sending tasks faster than one person may",
    quota_exceeded: "Your tasks hold all the storage one person may use; delete some tasks to make room",
    overloaded: "The service is full right now",
    insufficient_storage: "The service is out of disk space for now",
  };

  // ---- talking to the API ----------------------------------------------------------

  /** fetch() with the API key; on 401, ask for a key and try again with it. */
  async function api(method, url, body, extraHeaders) {
    for (;;) {
      const key = sessionStorage.getItem(API_KEY) || "";
      const headers = { Accept: "application/json", ...extraHeaders };
      if (key) headers.Authorization = "Bearer " + key;
      const response = await fetch(url, { method, headers, body, cache: "no-store" });
      if (response.status !== 401) return response;
      if (key && key !== (sessionStorage.getItem(API_KEY) || "")) continue; // a newer key came meanwhile
      await askForKey(key ? "That API key was not accepted. Check it and try again." : "");
    }
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  /** A sentence for a failed answer, built on the API's own error.message. */
  function explain(response, answer) {
    const code = answer && answer.error && answer.error.code;
    const lead = REFUSALS[code] || LEADS[response.status] || "Something went wrong on the server";
    const message = answer && answer.error && answer.error.message;
    const text = message ? `${lead}: ${message}.` : `${lead} (HTTP ${response.status}).`;
    const wait = Number(response.headers.get("Retry-After"));
    return REFUSALS[code] && wait > 0 ? `${text} Try again in ${wait} s.` : text;
  }

  function retryAfter(response, fallback) {
    const seconds = Number(response.headers.get("Retry-After"));
    return Number.isFinite(seconds) && seconds > 0 ? seconds : fallback;
  }

  // ---- the API key ------------------------------------------------------------------

  let keyWanted = null; // {promise, resolve} while the key form waits for the person

  function askForKey(problem) {
    if (problem) {
      sessionStorage.removeItem(API_KEY);
      show($("key-error"), problem);
    }
    if (!keyWanted) {
      let resolve;
      const promise = new Promise((done) => { resolve = done; });
      keyWanted = { promise, resolve };
      keyForm.hidden = false;
      $("api-key").focus();
    }
    return keyWanted.promise;
  }

  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      show($("key-error"), "Enter the API key you were given.");
      return;
    }
    sessionStorage.setItem(API_KEY, key);
    $("api-key").value = "";
    hide($("key-error"));
    keyForm.hidden = true;
    const waiting = keyWanted;
    keyWanted = null;
    if (waiting) waiting.resolve();
  });

  // ---- the form ---------------------------------------------------------------------

  function mode() {
    return taskForm.elements.mode.value;
  }

  function showMode() {
    const resize = mode() === "resize";
    for (const [id, on] of [["score-fields", !resize], ["resize-fields", resize]]) {
      $(id).hidden = !on;
      $(id).disabled = !on;
    }
    clearProblems();
  }

  for (const radio of taskForm.elements.mode) radio.addEventListener("change", showMode);

  let previewUrl = "";

  function showChosenPhoto() {
    const file = photo.files[0];
    const preview = $("preview");
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = "";
    preview.hidden = true;
    $("file-name").textContent = file ? `${file.name} · ${formatBytes(file.size)}` : "JPEG, PNG, WebP, GIF, BMP or TIFF";
    drop.classList.toggle("chosen", Boolean(file));
    if (file && file.type.startsWith("image/")) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;
    }
    clearProblems();
  }

  $("preview").addEventListener("load", () => { $("preview").hidden = false; });
  $("preview").addEventListener("error", () => { $("preview").hidden = true; });
  photo.addEventListener("change", showChosenPhoto);

  // Drag and drop: the dropped file becomes the file input's file.
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (!file) return;
    const chosen = new DataTransfer();
    chosen.items.add(file);
    photo.files = chosen.files;
    showChosenPhoto();
  });
  // A file dropped beside the drop zone must not make the browser leave the page.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

  /** The multipart body for POST /, with only the fields that were filled in. */
  function formBody() {
    const body = new FormData();
    const fields = mode() === "score" ? ["name"] : ["width", "height", "fit", "format", "quality"];
    for (const name of fields) {
      const value = taskForm.elements[name].value.trim();
      if (value) body.append(name, value);
    }
    if (mode() === "resize" && taskForm.elements.enlarge.checked) body.append("enlarge", "1");
    body.append("photo", photo.files[0]);
    return body;
  }

  /** What must be there before anything is sent; the API checks the rest. */
  function missing() {
    if (!photo.files[0]) return ["photo", "Choose a photo first."];
    if (mode() === "score" && !taskForm.elements.name.value.trim()) return ["name", "Enter the name to score."];
    if (mode() === "resize" && !taskForm.elements.width.value.trim() && !taskForm.elements.height.value.trim()) {
      return ["width", "Give a width, a height or both."];
    }
    return null;
  }

  function describe() {
    const file = photo.files[0].name;
    if (mode() === "score") return `“${taskForm.elements.name.value.trim()}” · ${file}`;
    const width = taskForm.elements.width.value.trim() || "auto";
    const height = taskForm.elements.height.value.trim() || "auto";
    return `${file} → ${width} × ${height}, ${taskForm.elements.fit.value}`;
  }

  taskForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems();
    const problem = missing();
    if (problem) {
      formProblem(problem[1], problem[0]);
      return;
    }
    const send = $("send");
    const task = { kind: mode(), title: describe() };
    send.disabled = true;
    send.textContent = "Sending…";
    try {
      const response = await api("POST", "/", formBody());
      const answer = await readJson(response);
      if (response.ok && answer && Number.isInteger(answer.task)) {
        addTask({ ...task, id: answer.task }, true);
      } else {
        formProblem(explain(response, answer), answer && answer.error && answer.error.field);
      }
    } catch {
      formProblem("The service could not be reached. Check the connection and try again.");
    } finally {
      send.disabled = false;
      send.textContent = "Send";
    }
  });

  function formProblem(message, field) {
    show($("form-error"), message);
    const input = field && taskForm.elements[field];
    if (input && !input.disabled) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "form-error");
      if (field === "photo") drop.classList.add("invalid");
      input.focus();
    }
  }

  function clearProblems() {
    hide($("form-error"));
    drop.classList.remove("invalid");
    for (const input of taskForm.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }
  }

  // ---- the task list ----------------------------------------------------------------

  function saveTasks() {
    const kept = [...list.children].map((el) => tasks.get(Number(el.dataset.task)))
      .map(({ id, kind, title }) => ({ id, kind, title })); // in the list's order, newest first
    localStorage.setItem(TASKS_KEY, JSON.stringify(kept));
  }

  function storedTasks() {
    try {
      const kept = JSON.parse(localStorage.getItem(TASKS_KEY) || "[]");
      return Array.isArray(kept) ? kept.filter((task) => Number.isInteger(task.id)) : [];
    } catch {
      return [];
    }
  }

  /** Show a task at the top of the list and follow it; one already listed moves up. */
  function addTask(task, fresh) {
    let item = tasks.get(task.id);
    if (!item) {
      item = { ...task, el: $("task-template").content.firstElementChild.cloneNode(true), timer: 0 };
      const el = item.el;
      el.dataset.task = String(task.id);
      el.dataset.kind = task.kind;
      el.querySelector(".badge").textContent = task.kind === "resize" ? "Resize" : "Score";
      el.querySelector(".task-title").textContent = task.title || "";
      el.querySelector(".task-number").textContent = `#${task.id}`;
      el.querySelector("progress").setAttribute("aria-label", `Progress of task ${task.id}`);
      el.querySelector(".delete").setAttribute("aria-label", `Delete task ${task.id}`);
      el.querySelector(".delete").addEventListener("click", () => deleteTask(item));
      setStatus(item, "Queued");
      tasks.set(task.id, item);
    }
    if (fresh) {
      list.prepend(item.el);
      item.el.scrollIntoView({ block: "nearest" });
    } else {
      list.append(item.el);
    }
    $("no-tasks").hidden = true;
    saveTasks();
    poll(item);
  }

  async function poll(item) {
    clearTimeout(item.timer);
    let response, answer;
    const holding = held < MAX_HELD;
    if (holding) held += 1;
    try {
      const prefer = holding ? { Prefer: `wait=${item.wait || 1}` } : {};
      response = await api("GET", `/?task_id=${item.id}`, undefined, prefer);
      answer = await readJson(response);
    } catch {
      if (tasks.has(item.id)) later(item, 5, "The service cannot be reached; trying again…");
      return;
    } finally {
      if (holding) held -= 1;
    }
    if (!tasks.has(item.id)) return; // deleted meanwhile
    if (response.status === 202 && answer) {
      showProgress(item, answer.progress);
      item.wait = Math.min(MAX_WAIT, Math.max(1, Math.round(retryAfter(response, 1))));
      // A held answer has waited already: ask again at once (held again, or polled).
      later(item, response.headers.has("Preference-Applied") ? 0 : retryAfter(response, 1));
    } else if (response.status === 200 && answer) {
      showOutcome(item, answer);
    } else if (response.status === 404) {
      finish(item, "gone");
      setStatus(item, "This task no longer exists: it was deleted or has expired.");
    } else {
      later(item, retryAfter(response, 5), `${explain(response, answer)} Trying again…`);
    }
  }

  function later(item, seconds, status) {
    if (status) setStatus(item, status);
    item.timer = setTimeout(() => poll(item), seconds * 1000);
  }

  function showProgress(item, progress) {
    const percent = Math.max(0, Math.min(99, Number(progress) || 0));
    item.el.querySelector("progress").value = percent;
    setStatus(item, percent === 0 ? "Queued" : `Working… ${percent}%`);
  }

  function showOutcome(item, answer) {
    const result = item.el.querySelector(".task-result");
    result.replaceChildren();
    if (answer.status === "ready" && typeof answer.result === "number") {
      finish(item, "ready");
      setStatus(item, "Ready");
      result.append(element("p", "score", [element("span", "label", "Score"), element("strong", "", String(answer.result))]));
    } else if (answer.status === "ready" && answer.result && answer.result.url) {
      finish(item, "ready");
      setStatus(item, "Ready");
      result.append(resizedImage(item, answer.result));
    } else {
      finish(item, "failed");
      const error = answer.error || {};
      setStatus(item, "Failed");
      result.append(element("p", "message error", `The task failed: ${error.message || "no reason was given"}.`));
    }
  }

  function resizedImage(item, result) {
    const image = element("img");
    image.src = result.url;
    image.width = result.width;
    image.height = result.height;
    image.alt = `Resized photo, ${result.width} × ${result.height} pixels`;
    const extension = result.format === "jpeg" ? "jpg" : result.format;
    const link = element("a", "download", "Download");
    link.href = result.url;
    link.download = `photo-task-${item.id}.${extension}`;
    const size = `${result.width} × ${result.height} px · ${String(result.format).toUpperCase()} · ${formatBytes(result.bytes)}`;
    return element("figure", "", [image, element("figcaption", "", [element("span", "", size), link])]);
  }

  /** A task's last state: its bar goes, and screen readers hear of it once. */
  function finish(item, state) {
    item.el.classList.add(state);
    item.el.querySelector(".task-progress progress").hidden = true;
    const words = { ready: "is ready", failed: "failed", gone: "no longer exists" };
    $("announce").textContent = `Task ${item.id} ${words[state]}.`;
  }

  function setStatus(item, text) {
    item.el.querySelector(".task-status").textContent = text;
  }

  async function deleteTask(item) {
    const button = item.el.querySelector(".delete");
    button.disabled = true;
    try {
      const response = await api("DELETE", `/?task_id=${item.id}`);
      if (response.ok || response.status === 404) {
        forget(item);
        return;
      }
      setStatus(item, `Not deleted. ${explain(response, await readJson(response))}`);
    } catch {
      setStatus(item, "Not deleted: the service could not be reached.");
    }
    button.disabled = false;
  }

  /** Drop a deleted task from the list and storage, keeping keyboard focus nearby. */
  function forget(item) {
    clearTimeout(item.timer);
    const next = item.el.nextElementSibling || item.el.previousElementSibling;
    tasks.delete(item.id);
    item.el.remove();
    saveTasks();
    $("no-tasks").hidden = tasks.size > 0;
    (next ? next.querySelector(".delete") : $("tasks-title")).focus();
  }

  // ---- small helpers ----------------------------------------------------------------

  function element(tag, className, content) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (Array.isArray(content)) el.append(...content);
    else if (content !== undefined) el.textContent = content;
    return el;
  }

  function show(el, text) {
    el.textContent = text;
    el.hidden = false;
  }

  function hide(el) {
    el.textContent = "";
    el.hidden = true;
  }

  function formatBytes(bytes) {
    if (!Number.isFinite(bytes)) return "";
    if (bytes < 1000) return `${bytes} bytes`;
    if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
    return `${(bytes / 1e6).toFixed(1)} MB`;
  }

  showMode();
  for (const task of storedTasks()) addTask(task, false);
})();
