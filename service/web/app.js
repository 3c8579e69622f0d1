// The exportd page: files in, exports out. Plain DOM, no build step; everything it shows about
// formats and options comes from GET /v1/formats, every error sentence from the API's problems.
"use strict";

const KEY_STORAGE = "exportd.apiKey"; // sessionStorage: gone when the browser session ends
const WAIT_S = 30;

const $ = (id) => document.getElementById(id);
let catalogue = null; // the body of /v1/formats

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

function say(text) { $("status").textContent = text; }

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

// A problem body's sentence, else the HTTP status.
function problemSentence(status, body) {
  if (body && typeof body === "object" && body.detail) return body.detail;
  if (status === 0) return "exportd could not be reached.";
  return "The request failed (HTTP " + status + ").";
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (resp.status === 401) $("api-key").focus();
  if (!resp.ok) throw new Error(problemSentence(resp.status, body));
  return body;
}

// -- formats and the options form --------------------------------------------------------------------

function chosenKinds() {
  const kinds = new Set();
  for (const file of $("files").files) {
    const kind = catalogue && catalogue.inputs[file.type];
    if (kind) kinds.add(kind);
  }
  return kinds;
}

function conversionFor(format) {
  if (!catalogue) return null;
  const kinds = chosenKinds();
  const matches = catalogue.conversions.filter((c) => c.to === format);
  return matches.find((c) => kinds.has(c.from)) || matches[0] || null;
}

function fillFormats() {
  const select = $("format");
  const kinds = chosenKinds();
  const previous = select.value;
  const formats = [];
  for (const c of catalogue.conversions) {
    if ((kinds.size === 0 || kinds.has(c.from)) && !formats.includes(c.to)) formats.push(c.to);
  }
  select.replaceChildren(new Option("Choose a format", ""));
  for (const f of formats) select.add(new Option(f, f));
  if (formats.includes(previous)) select.value = previous;
  fillOptions();
}

function labelFor(name) {
  const text = name.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function optionInput(name, spec) {
  const id = "opt-" + name;
  let input;
  const enumValues = spec.enum || (spec.items && spec.items.enum);
  if (spec.type === "boolean") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = spec.default === true;
  } else if (enumValues && spec.type !== "array") {
    input = document.createElement("select");
    if (spec.nullable) input.add(new Option("(none)", ""));
    for (const v of enumValues) input.add(new Option(String(v), String(v)));
    input.value = spec.default === null ? "" : String(spec.default);
  } else {
    input = document.createElement("input");
    if (spec.type === "integer" || spec.type === "number") {
      input.type = "number";
      input.step = spec.type === "integer" ? "1" : "any";
      if (spec.minimum !== undefined) input.min = spec.minimum;
      if (spec.maximum !== undefined) input.max = spec.maximum;
    } else {
      input.type = "text";
      if (spec.maxLength) input.maxLength = spec.maxLength;
    }
    if (spec.type === "array") {
      input.value = (spec.default || []).join(", ");
      input.placeholder = "comma-separated" + (enumValues ? ": " + enumValues.join(", ") : "");
    } else if (spec.default !== null && spec.default !== undefined) {
      input.value = String(spec.default);
    }
  }
  input.id = id;
  input.name = name;
  input.dataset.option = name;
  const hintId = id + "-hint";
  input.setAttribute("aria-describedby", hintId);
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = labelFor(name);
  const hint = document.createElement("p");
  hint.id = hintId;
  hint.className = "hint";
  const bounds = [];
  if (spec.minimum !== undefined) bounds.push("from " + spec.minimum);
  if (spec.maximum !== undefined) bounds.push("to " + spec.maximum);
  hint.textContent = spec.description + (bounds.length ? " (" + bounds.join(" ") + ")" : "");
  const wrap = document.createElement("div");
  wrap.className = spec.type === "boolean" ? "check" : "field";
  if (spec.type === "boolean") wrap.append(input, label); else wrap.append(label, input);
  const outer = document.createElement("div");
  outer.append(wrap, hint);
  return outer;
}

function fillOptions() {
  const conversion = conversionFor($("format").value);
  const box = $("option-fields");
  box.replaceChildren();
  $("options").hidden = !conversion;
  $("format-hint").textContent = conversion ? conversion.description : "";
  if (!conversion) return;
  for (const [name, spec] of Object.entries(conversion.options)) box.append(optionInput(name, spec));
}

function typed(value, type) {
  if (type === "integer" || type === "number") return Number(value);
  return value;
}

// Only the options the person changed: the rest keep the service's defaults.
function chosenOptions() {
  const conversion = conversionFor($("format").value);
  const chosen = {};
  if (!conversion) return chosen;
  for (const [name, spec] of Object.entries(conversion.options)) {
    const input = $("opt-" + name);
    let value;
    if (spec.type === "boolean") {
      value = input.checked;
    } else if (spec.type === "array") {
      const items = input.value.split(",").map((s) => s.trim()).filter((s) => s);
      value = items.map((s) => typed(s, spec.items ? spec.items.type : "string"));
      if (!items.length && spec.nullable) value = null;
    } else if (input.value === "") {
      value = spec.nullable ? null : spec.default;
    } else {
      value = typed(input.value, spec.type);
    }
    if (JSON.stringify(value) !== JSON.stringify(spec.default)) chosen[name] = value;
  }
  return chosen;
}

// -- submitting and following the job --------------------------------------------------------------

function upload(form) {
  // XMLHttpRequest, not fetch: only it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/exports?wait=" + WAIT_S);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    const bar = $("upload-progress");
    bar.hidden = $("upload-label").hidden = false;
    bar.value = 0;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        bar.value = Math.round((e.loaded / e.total) * 100);
        say("Uploading… " + bar.value + " %");
      }
    };
    xhr.upload.onload = () => say("Uploaded; converting…");
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 401) $("api-key").focus();
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error(problemSentence(xhr.status, body)));
    };
    xhr.onerror = () => reject(new Error(problemSentence(0, null)));
    xhr.send(form);
  });
}

function showOutputs(job) {
  const list = $("outputs");
  list.replaceChildren();
  for (const out of job.outputs) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = out.url;
    link.download = out.name;
    link.textContent = out.name;
    item.append(link, " (" + out.size.toLocaleString() + " bytes, until " + new Date(out.expires_at).toLocaleString() + ")");
    list.append(item);
  }
}

async function follow(job) {
  const started = Date.now();
  while (job.status !== "succeeded" && job.status !== "failed" && job.status !== "canceled") {
    say("Job " + job.status + "… " + Math.round((Date.now() - started) / 1000) + " s");
    job = await api("/v1/exports/" + encodeURIComponent(job.id) + "?wait=" + WAIT_S);
  }
  return job;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  $("outputs").replaceChildren();
  const files = $("files").files;
  if (!files.length) { showError("Choose at least one file."); $("files").focus(); return; }
  if (!$("format").value) { showError("Choose a format."); $("format").focus(); return; }
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  form.append("format", $("format").value);
  form.append("options", JSON.stringify(chosenOptions()));
  $("submit").disabled = true;
  try {
    const job = await follow(await upload(form));
    if (job.status === "failed") {
      say("The export failed.");
      showError(job.error ? job.error.message : "The export failed.");
    } else if (job.status === "canceled") {
      say("The export was canceled.");
      showError("The export was canceled (DELETE /v1/exports/" + job.id + ").");
    } else {
      say("Done: " + job.outputs.length + " file(s) ready to download.");
      showOutputs(job);
      const first = $("outputs").querySelector("a");
      if (first) first.focus();
    }
  } catch (err) {
    say("");
    showError(err.message);
  } finally {
    $("submit").disabled = false;
  }
}

// -- start ------------------------------------------------------------------------------------------

function wireDrop() {
  const zone = $("drop");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    $("files").files = e.dataTransfer.files;
    fillFormats();
  });
}

async function start() {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("input", () => sessionStorage.setItem(KEY_STORAGE, key.value.trim()));
  $("files").addEventListener("change", fillFormats);
  $("format").addEventListener("change", fillOptions);
  $("export-form").addEventListener("submit", submit);
  wireDrop();
  // The formats need a key too: until one is given (or while it is wrong), each change tries again.
  key.addEventListener("input", () => { if (!catalogue) loadFormats(); });
  await loadFormats();
}

async function loadFormats() {
  try {
    catalogue = await api("/v1/formats");
    showError("");
    fillFormats();
  } catch (err) {
    showError(err.message);
  }
}

document.addEventListener("DOMContentLoaded", start);
