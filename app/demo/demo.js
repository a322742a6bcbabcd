// The demo page: plain JavaScript over the service's own API (same origin). Nothing is fetched
// from elsewhere, nothing is stored: photos live in this page's memory, and so does the API key.
"use strict";

const state = { files: { image1: null, image2: null }, info: null };
const $ = (selector, root = document) => root.querySelector(selector);
const COLOURS = { chosen: "#16c172", other: "#f2b705", runnerUp: "#9aa3b5" };
const SCALE_MAX = 1.4; // distances above this are drawn at the bar's end

function apiHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function call(method, path, body, json) {
  const headers = apiHeaders();
  if (json) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: json ? JSON.stringify(json) : body });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    throw (data && data.error) ? data.error : { code: `http_${response.status}`, message: response.statusText };
  }
  return data;
}

// -- photos -----------------------------------------------------------------------------------

function slotOf(field) { return document.querySelector(`.slot[data-field="${field}"]`); }

function setPhoto(field, blob, name) {
  state.files[field] = { blob, name: name || `${field}.jpg` };
  const slot = slotOf(field);
  const img = $(".photo", slot);
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  clearFaces(field);
}

function clearFaces(field) {
  const slot = slotOf(field);
  const canvas = $(".overlay", slot);
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.boxes = "[]";
  $("[data-role=faces]", slot).textContent = "";
}

// faces: [{box: {x1, y1, x2, y2}, landmarks: {name: {x, y}} | null, colour, label}] in the photo's pixels.
function drawFaces(field, faces, caption) {
  const slot = slotOf(field);
  const img = $(".photo", slot);
  const canvas = $(".overlay", slot);
  canvas.width = img.clientWidth;
  canvas.height = img.clientHeight;
  const scale = img.naturalWidth ? img.clientWidth / img.naturalWidth : 1;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.lineWidth = 2;
  context.font = "12px system-ui, sans-serif";
  for (const face of faces) {
    const { x1, y1, x2, y2 } = face.box;
    context.strokeStyle = context.fillStyle = face.colour;
    context.setLineDash(face.dashed ? [5, 4] : []);
    context.strokeRect(x1 * scale, y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale);
    if (face.label) context.fillText(face.label, x1 * scale + 2, Math.max(12, y1 * scale - 4));
    for (const point of Object.values(face.landmarks || {})) {
      context.beginPath();
      context.arc(point.x * scale, point.y * scale, 2.5, 0, 2 * Math.PI);
      context.fill();
    }
  }
  canvas.dataset.boxes = JSON.stringify(faces.map((face) => face.box));
  $("[data-role=faces]", slot).textContent = caption || "";
}

function facesOf(summary, label) {
  const faces = [{ box: summary.box, landmarks: summary.landmarks, colour: COLOURS.chosen, label }];
  if (summary.runner_up) faces.push({ box: summary.runner_up, colour: COLOURS.runnerUp, dashed: true, label: "runner-up" });
  return faces;
}

function caption(summary) {
  const parts = [`${summary.faces_detected} face${summary.faces_detected === 1 ? "" : "s"} found`,
    `detection score ${summary.detection_score.toFixed(3)}`];
  if (summary.ambiguous) parts.push("ambiguous: another face is nearly as likely the photo's subject");
  if (summary.quality) {
    const reasons = summary.quality.reasons.length ? ` (${summary.quality.reasons.join(", ")})` : "";
    parts.push(`quality ${summary.quality.level} ${summary.quality.score.toFixed(2)}${reasons}`);
  }
  return parts.join(" · ");
}

function wireSlot(slot) {
  const field = slot.dataset.field;
  const drop = $(".drop", slot);
  $(".file", slot).addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) setPhoto(field, file, file.name);
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) setPhoto(field, file, file.name);
  });
  $(".camera", slot).addEventListener("click", () => startCamera(slot));
}

async function startCamera(slot) {
  const video = $(".live", slot);
  const snap = $(".snap", slot);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError({ code: "camera_unavailable", message: "this browser gives no camera to this page (it needs https or localhost)" });
    return;
  }
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    showError({ code: "camera_unavailable", message: String(error.message || error) });
    return;
  }
  video.hidden = snap.hidden = false;
  snap.onclick = () => {
    const frame = document.createElement("canvas");
    frame.width = video.videoWidth;
    frame.height = video.videoHeight;
    frame.getContext("2d").drawImage(video, 0, 0);
    video.srcObject.getTracks().forEach((track) => track.stop());
    video.hidden = snap.hidden = true;
    frame.toBlob((blob) => setPhoto(slot.dataset.field, blob, "camera.jpg"), "image/jpeg", 0.92);
  };
}

// -- results ----------------------------------------------------------------------------------

function showError(error) {
  const box = $("#error");
  box.hidden = false;
  box.textContent = `${error.code}: ${error.message}`;
  box.dataset.code = error.code;
}

function resetResult() {
  $("#error").hidden = true;
  $("#error").dataset.code = "";
  $("#verdict").textContent = "";
  $("#verdict").className = "verdict";
  $("#scale").hidden = true;
  $("#details").replaceChildren();
  $("#curl").textContent = "";
}

function showVerdict(same, text) {
  const verdict = $("#verdict");
  verdict.textContent = text;
  verdict.className = `verdict ${same ? "same" : "different"}`;
  verdict.dataset.same = String(same);
}

function showScale(distance, points) {
  $("#scale").hidden = false;
  const at = (value) => `${Math.min(100, (value / SCALE_MAX) * 100)}%`;
  $("#distance-marker").style.left = at(distance);
  const ticks = $("#ticks");
  const legend = $("#legend");
  ticks.replaceChildren();
  legend.replaceChildren();
  [...points].sort((a, b) => a.threshold - b.threshold).forEach((point, index) => {
    const tick = document.createElement("span");
    tick.className = "tick";
    tick.style.left = at(point.threshold);
    tick.style.top = `${index * 0.95}rem`; // thresholds lie close together: one row each
    tick.textContent = point.name;
    ticks.append(tick);
    const row = document.createElement("li");
    row.textContent = `${point.name}: same at or below ${point.threshold.toFixed(4)}; held out FAR ` +
      `${point.far.toExponential(2)}, FRR ${(point.frr * 100).toFixed(2)}%`;
    legend.append(row);
  });
  ticks.style.height = `${points.length * 0.95 + 0.3}rem`;
}

function showDetails(rows) {
  const list = $("#details");
  list.replaceChildren();
  for (const [name, value] of rows) {
    if (value === undefined || value === null || value === "") continue;
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    list.append(term, detail);
  }
}

function timings(ms) {
  return Object.entries(ms).map(([stage, value]) => `${stage} ${value.toFixed(1)}`).join(", ") + " ms";
}

function pointText(point) {
  return point ? `${point.name}: FAR ${point.far.toExponential(2)}, FRR ${(point.frr * 100).toFixed(2)}% (held out)` : "explicit threshold";
}

function showCurl(path, fields) {
  const key = $("#api-key").value.trim() ? " -H \"X-API-Key: $FACEVER_API_KEY\"" : "";
  const parts = fields.map(([name, value, file]) => (file ? ` -F ${name}=@${quote(value)}` : ` -F ${name}=${quote(value)}`));
  $("#curl").textContent = `curl${key}${parts.join("")} ${location.origin}${path}`;
}

function quote(text) { return /^[\w.\/-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`; }

// -- actions ----------------------------------------------------------------------------------

async function busy(action) {
  const buttons = document.querySelectorAll("button");
  buttons.forEach((button) => { button.disabled = true; });
  resetResult();
  try { await action(); } catch (error) { showError(error.code ? error : { code: "network_error", message: String(error) }); }
  finally { buttons.forEach((button) => { button.disabled = false; }); }
}

function needPhotos(...fields) {
  const missing = fields.filter((field) => !state.files[field]);
  if (missing.length) throw { code: "missing_photo", message: `choose ${missing.join(" and ")} first` };
}

async function verifyPair() {
  needPhotos("image1", "image2");
  const form = new FormData();
  const fields = [];
  for (const field of ["image1", "image2"]) {
    form.append(field, state.files[field].blob, state.files[field].name);
    fields.push([field, state.files[field].name, true]);
  }
  const point = $("#operating-point").value;
  if (point) { form.append("operating_point", point); fields.push(["operating_point", point]); }
  showCurl("/verify", fields);
  const result = await call("POST", "/verify", form);
  for (const field of ["image1", "image2"]) {
    const summary = result.faces[field];
    if (summary) drawFaces(field, facesOf(summary, field), caption(summary));
  }
  showVerdict(result.same, result.same ? "Same person" : "Different people");
  showScale(result.distance, state.info ? state.info.service.operating_points : []);
  showDetails([
    ["distance", `${result.distance.toFixed(4)} (same at or below ${result.threshold.toFixed(4)})`],
    ["operating point", pointText(result.operating_point)],
    ["probability same", result.probability_same === null ? "uncalibrated" : result.probability_same.toFixed(4)],
    ["faces found", `${result.faces.image1.faces_detected} and ${result.faces.image2.faces_detected}`],
    ["timings", timings(result.timings_ms)],
    ["model", `${result.model.name} ${result.model.version}`],
    ["request id", result.request_id],
  ]);
}

function subjectPath() {
  const gallery = encodeURIComponent($("#gallery").value.trim());
  const subject = encodeURIComponent($("#subject").value.trim());
  return { gallery: `/galleries/${gallery}`, subject: `/galleries/${gallery}/subjects/${subject}` };
}

async function ignoring(code, promise) {
  try { return await promise; } catch (error) { if (error.code !== code) throw error; return null; }
}

async function enrol() {
  needPhotos("image1");
  const paths = subjectPath();
  await ignoring("gallery_exists", call("POST", "/galleries", null, { id: $("#gallery").value.trim() }));
  await ignoring("subject_exists", call("POST", `${paths.gallery}/subjects`, null, { id: $("#subject").value.trim() }));
  const form = new FormData();
  form.append("images", state.files.image1.blob, state.files.image1.name);
  showCurl(`${paths.subject}/faces`, [["images", state.files.image1.name, true]]);
  const result = await call("POST", `${paths.subject}/faces`, form);
  drawFaces("image1", facesOf(result.faces[0], "enrolled"), caption(result.faces[0]));
  showVerdict(true, `Enrolled: ${result.subject.id} now has ${result.subject.templates} face${result.subject.templates === 1 ? "" : "s"}`);
  showDetails([
    ["checked against", `${result.checked_against} stored face(s)`],
    ["template", result.added[0].id],
    ["timings", timings(result.timings_ms)],
    ["request id", result.request_id],
  ]);
}

async function verifySubject() {
  needPhotos("image1");
  const paths = subjectPath();
  const form = new FormData();
  form.append("image", state.files.image1.blob, state.files.image1.name);
  showCurl(`${paths.subject}/verify`, [["image", state.files.image1.name, true]]);
  const result = await call("POST", `${paths.subject}/verify`, form);
  if (result.face) drawFaces("image1", facesOf(result.face, "probe"), caption(result.face));
  showVerdict(result.same, result.same ? `This is ${result.subject}` : `Not ${result.subject}`);
  const calibrated = result.operating_point ? result.operating_point.templates : null;
  const points = (state.info && state.info.service.subjects ? state.info.service.subjects.operating_points : [])
    .filter((point) => point.templates === calibrated);
  showScale(result.score, points);
  showDetails([
    ["score", `${result.score.toFixed(4)} (${result.rule}; same at or below ${result.threshold.toFixed(4)})`],
    ["operating point", result.operating_point ? `${pointText(result.operating_point)}, for ${calibrated} template(s)` : "explicit threshold"],
    ["templates compared", `${result.templates_compared} (best ${result.best_template.id}, distance ${result.best_template.distance.toFixed(4)})`],
    ["timings", timings(result.timings_ms)],
    ["request id", result.request_id],
  ]);
}

async function searchGallery() {
  needPhotos("image1");
  const gallery = subjectPath().gallery;
  const form = new FormData();
  form.append("image", state.files.image1.blob, state.files.image1.name);
  showCurl(`${gallery}/search`, [["image", state.files.image1.name, true]]);
  const result = await call("POST", `${gallery}/search`, form);
  if (result.face) drawFaces("image1", facesOf(result.face, "probe"), caption(result.face));
  showVerdict(result.match !== null, result.match ? `This is ${result.match.subject}` : "Nobody enrolled");
  const point = result.operating_point;
  showDetails([
    ["candidates", result.candidates.map((c) => `${c.subject} ${c.score.toFixed(4)} (threshold ${c.threshold.toFixed(4)})`).join("; ") || "none"],
    ["operating point", point ? `${point.name} for a gallery of ${result.gallery_size}` +
      (point.measured ? `; measured on ${point.measured.gallery_size}: FNIR ${(point.measured.fnir * 100).toFixed(1)}%, rank-1 ${(point.measured.rank1 * 100).toFixed(1)}%` : "") +
      (point.extrapolated ? " (gallery larger than calibrated)" : "") : "explicit threshold"],
    ["timings", timings(result.timings_ms)],
    ["request id", result.request_id],
  ]);
}

async function deleteSubject() {
  const result = await call("DELETE", subjectPath().subject);
  showVerdict(true, `Deleted: ${result.deleted.subjects} subject, ${result.deleted.templates} face(s)`);
  showDetails([["request id", result.request_id]]);
}

async function loadInfo() {
  try {
    state.info = await call("GET", "/info");
  } catch (error) {
    showError(error);
    return;
  }
  $("#error").hidden = true;
  const select = $("#operating-point");
  select.replaceChildren();
  for (const point of state.info.service.operating_points) {
    const option = new Option(`${point.name} (FAR ${point.far.toExponential(1)})`, point.name);
    option.selected = point.name === state.info.service.default_operating_point;
    select.append(option);
  }
  $("#subjects").hidden = !state.info.service.subjects;
  document.body.dataset.ready = "true";
}

function copyCurl() {
  if (navigator.clipboard) navigator.clipboard.writeText($("#curl").textContent);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".slot").forEach(wireSlot);
  $("#verify").addEventListener("click", () => busy(verifyPair));
  $("#enrol").addEventListener("click", () => busy(enrol));
  $("#verify-subject").addEventListener("click", () => busy(verifySubject));
  $("#delete-subject").addEventListener("click", () => busy(deleteSubject));
  $("#search").addEventListener("click", () => busy(searchGallery));
  $("#copy-curl").addEventListener("click", copyCurl);
  $("#api-key").addEventListener("change", loadInfo);
  loadInfo();
});
