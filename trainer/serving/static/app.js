// The analysts' page: uploads to /v1/analyze and draws the record dfd-predict would write.
// Plain JavaScript, no library, no CDN: the page works offline.
"use strict";
const $ = (id) => document.getElementById(id);
let card = null;

function fmt(p) { return p === undefined || p === null ? "-" : p.toFixed(4); }

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
}

async function loadCard() {
  try {
    const answer = await fetch("/v1/detector");
    card = await answer.json();
  } catch (e) { return; }
  const d = card.detector || {};
  const rows = [
    ["Model", card.model_name + " (" + card.model + ")"],
    ["Backbone", d.backbone], ["Input size", d.image_size + " px"],
    ["Threshold", fmt(card.threshold) + ": fake when p_fake >= threshold"],
    ["Threshold from", card.threshold_source],
    ["Labels", (d.label_names || []).join(", ") + "; positive class " + d.positive_class],
  ];
  // The model card's keys (trainer/export.py DetectorMetadata); exports older than
  // them lack them, and a value of null or "" means "not measured": not shown.
  const cardRows = [["Dataset", "dataset"], ["Exported", "exported_at"],
    ["Validation AUC", "validation_auc"], ["Validation EER", "validation_eer"]];
  for (const [title, key] of cardRows) {
    const value = d[key];
    if (value === undefined || value === null || value === "") continue;
    rows.push([title, typeof value === "number" ? fmt(value) : String(value)]);
  }
  const limits = card.limits || {};
  rows.push(["Limits", (limits.max_upload_bytes / 1e6).toFixed(0) + " MB per file, videos scored on their first " +
    limits.max_video_seconds + " s"]);
  const list = $("card-list");
  list.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v === undefined ? "-" : v;
    list.append(dt, dd);
  }
  $("explain-option").hidden = !card.explain_available;
}

function ruleText(record) {
  const t = fmt(record.threshold);
  if (record.kind === "photo") return "The photo is as fake as its most suspicious face; a face is fake when p_fake >= " + t + ".";
  if (record.kind === "video") return "The video is as fake as its most suspicious face track; a track is scored from its most suspicious frames; fake when p_fake >= " + t + ".";
  return "Scored as one aligned face crop; fake when p_fake >= " + t + ".";
}

function addRow(item, number, label, score, detail, testid) {
  const row = document.createElement("tr");
  row.className = label || "none";
  row.setAttribute("data-testid", testid);
  row.dataset.label = label || "";
  row.dataset.score = score === undefined || score === null ? "" : String(score);
  for (const text of [number, label || "not scored", fmt(score), detail]) {
    const cell = document.createElement("td"); cell.textContent = text; row.append(cell);
  }
  $("items").tBodies[0].append(row);
}

function drawPhoto(record, file) {
  const box = $("picture");
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = record.path;
  box.append(img);
  const faces = [...(record.faces || []).map((f) => [f, f.label]), ...(record.too_small || []).map((f) => [f, null])];
  for (const [face, label] of faces) {
    const [x1, y1, x2, y2] = face.box;
    const div = document.createElement("div");
    div.className = "box " + (label || "none");
    div.style.left = (100 * x1 / record.width) + "%";
    div.style.top = (100 * y1 / record.height) + "%";
    div.style.width = (100 * (x2 - x1) / record.width) + "%";
    div.style.height = (100 * (y2 - y1) / record.height) + "%";
    const tag = document.createElement("span");
    tag.textContent = label ? "#" + face.face + " " + label + " " + fmt(face.p_fake) : "too small";
    div.append(tag);
    box.append(div);
  }
  for (const face of record.faces || []) {
    addRow(face, face.face, face.label, face.p_fake, "detection confidence " + face.confidence.toFixed(3), "face");
  }
}

function render(record, file) {
  $("results").hidden = false;
  for (const id of ["picture", "timeline", "notes", "links"]) $(id).replaceChildren();
  $("items").tBodies[0].replaceChildren();
  const verdict = $("verdict");
  verdict.className = record.label || "";
  verdict.textContent = record.label
    ? record.path + ": " + record.label.toUpperCase() + " (p_fake " + fmt(record.p_fake) + ")"
    : record.path + ": no verdict (" + record.status.replace("_", " ") + ")";
  $("rule").textContent = ruleText(record) + " Threshold " + fmt(record.threshold) + " from " +
    (card ? card.threshold_source : "detector.json") + ".";
  if (record.kind === "photo") drawPhoto(record, file);
  if (record.kind === "crop") {
    const img = document.createElement("img"); img.src = URL.createObjectURL(file); img.alt = record.path;
    $("picture").append(img);
    addRow(record, 0, record.label, record.p_fake, "the whole image as one face crop", "face");
  }
  if (record.kind === "video") {
    for (const track of record.tracks || []) {
      addRow(track, track.track_id, track.label, track.p_fake,
        track.num_frames + " frames, " + track.start_time.toFixed(2) + "-" + track.end_time.toFixed(2) + " s", "track");
    }
  }
  const links = record.links || {};
  if (links["timeline.png"]) {
    const img = document.createElement("img"); img.src = links["timeline.png"]; img.alt = "timeline";
    $("timeline").append(img);
  }
  const notes = [];
  if (record.capped) notes.push(record.capped.note);
  if (record.error) notes.push(record.error);
  if (record.faces_over_limit) notes.push(record.faces_over_limit + " more faces over the limit were not scored");
  $("notes").textContent = notes.join(" ");
  for (const [name, href] of Object.entries(links)) {
    const a = document.createElement("a"); a.href = href; a.textContent = name; a.target = "_blank";
    $("links").append(a, " ");
  }
}

async function analyze(file) {
  $("error").hidden = true;
  $("results").hidden = true;
  $("status").textContent = "Analysing " + file.name + "...";
  const form = new FormData();
  form.append("file", file);
  if ($("explain").checked) form.append("explain", "1");
  let answer, body;
  try {
    answer = await fetch("/v1/analyze", { method: "POST", body: form });
    body = await answer.json();
  } catch (e) {
    showError("The server did not answer (" + e + ").");
    return;
  }
  if (!answer.ok) {
    const retry = answer.headers.get("Retry-After");
    showError(file.name + ": " + (body.error || answer.statusText) + (retry ? " (retry in " + retry + " s)" : ""));
    return;
  }
  $("status").textContent = "Done: " + file.name;
  render(body, file);
}

$("file").addEventListener("change", () => { if ($("file").files.length) analyze($("file").files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) analyze(e.dataTransfer.files[0]);
});
loadCard();
