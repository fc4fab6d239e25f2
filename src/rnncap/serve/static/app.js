// The rnncap page: photos from a drop, the file picker, the clipboard or the camera go to POST /api/caption one
// request per photo (the server batches the ones that arrive together); each card fills in when its answer comes.
// Attention maps are drawn here from the weights the API returns: the photo's centred square (the one the encoder
// read), dimmed where the model did not look for the word under the pointer.
"use strict";

const SIDE = 260; // canvas pixels per photo
const FLOOR = 0.25; // brightness where the model did not look at all (as in rnncap.report.attention_maps)
const $ = (id) => document.getElementById(id);
let models = [];

document.addEventListener("DOMContentLoaded", () => {
  $("options").addEventListener("submit", (event) => event.preventDefault());
  $("files").addEventListener("change", (event) => { captionFiles(event.target.files); event.target.value = ""; });
  setUpDrop($("drop"));
  document.addEventListener("paste", (event) => captionFiles(imagesOf(event.clipboardData)));
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("camera-snap").addEventListener("click", snapCamera);
  $("model").addEventListener("change", describeServing);
  loadModels();
});

async function loadModels() {
  try {
    const answer = await fetch("/api/models");
    if (!answer.ok) throw new Error(await errorText(answer));
    const listing = await answer.json();
    models = listing.models;
    const select = $("model");
    for (const model of models) {
      const option = new Option(model.name + (model.attention ? " (attention)" : ""), model.name);
      option.selected = model.default;
      select.add(option);
    }
    describeServing();
  } catch (err) {
    $("serving").textContent = "The server could not be reached: " + plainError(err);
  }
}

function describeServing() {
  const model = models.find((m) => m.name === $("model").value);
  if (!model) return;
  const maps = model.attention ? "shows where it looks for each word" : "has no attention maps";
  $("serving").textContent = `Serving ${model.name} (${model.kind}, ${model.vocab_size} words) on the ` +
    `${model.encoder} encoder; it ${maps}.`;
}

function setUpDrop(zone) {
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.remove("over"); });
  }
  zone.addEventListener("drop", (event) => captionFiles(event.dataTransfer.files));
}

function imagesOf(transfer) {
  return transfer ? [...transfer.items].filter((i) => i.kind === "file").map((i) => i.getAsFile()) : [];
}

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

function captionFiles(files) {
  notice("");
  const list = [...(files || [])];
  if (!list.length) return;
  // Newest first; every photo is its own request, so each card is filled as soon as its caption is ready.
  for (const file of list.reverse()) captionPhoto(file, file.name || "pasted photo");
}

async function captionPhoto(blob, name) {
  const card = newCard(name);
  const options = new URLSearchParams({ model: $("model").value, beam: $("beam").value });
  const model = models.find((m) => m.name === $("model").value);
  options.set("attention", model && model.attention ? "true" : "false");
  const form = new FormData();
  form.append("image", blob, name);
  const picture = drawPhoto(card, blob); // the photo shows while the server works
  try {
    const answer = await fetch("/api/caption?" + options, { method: "POST", body: form });
    if (!answer.ok) throw new Error(await errorText(answer));
    const result = await answer.json();
    showCaption(card, result.captions[0], await picture, result);
  } catch (err) {
    showError(card, plainError(err));
  }
}

async function errorText(answer) {
  // The server answers every refusal with {"error": "..."} in plain words; anything else gets one of ours.
  try {
    const body = await answer.json();
    if (body.error) return body.error;
  } catch (_) { /* not JSON: a proxy's page, say */ }
  const words = { 413: "the photo is too large", 503: "the server is busy: try again in a moment" };
  return words[answer.status] || `the server answered ${answer.status} ${answer.statusText}`;
}

function plainError(err) {
  return err instanceof TypeError ? "the server could not be reached (is rnncap serve still running?)" : err.message;
}

function newCard(name) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = name;
  $("results").prepend(card);
  return card;
}

function showError(card, text) {
  card.classList.add("failed");
  card.querySelector(".caption").remove();
  card.querySelector(".map-label").hidden = true;
  const error = card.querySelector(".error");
  error.textContent = "Could not caption this photo: " + text;
  error.hidden = false;
}

// Draws the photo's centred square on the card's canvas; resolves to the decoded bitmap (null if not an image).
async function drawPhoto(card, blob) {
  try {
    const bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
    paint(card.querySelector(".photo"), bitmap, 1, null, null);
    return bitmap;
  } catch (_) {
    return null;
  }
}

// The photo, and over it one word's map: weights (h*w, row-major) over an h x w grid of the crop's square.
function paint(canvas, bitmap, crop, weights, grid) {
  const ctx = canvas.getContext("2d");
  const side = crop * Math.min(bitmap.width, bitmap.height);
  const left = (bitmap.width - side) / 2, top = (bitmap.height - side) / 2;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(bitmap, left, top, side, side, 0, 0, SIDE, SIDE);
  if (!weights) return;
  const [h, w] = grid;
  const peak = Math.max(...weights) || 1;
  const shade = new ImageData(w, h);
  weights.forEach((value, cell) => {
    shade.data[4 * cell + 3] = Math.round(255 * (1 - FLOOR) * (1 - value / peak)); // black, more where it looked less
  });
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  small.getContext("2d").putImageData(shade, 0, 0);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(small, 0, 0, SIDE, SIDE); // smooth upsampling: cell (i, j) covers block (i, j) of the square
}

function showCaption(card, result, bitmap, answer) {
  const caption = card.querySelector(".caption");
  caption.classList.remove("pending");
  caption.textContent = "";
  const attention = result.attention;
  const canvas = card.querySelector(".photo");
  if (bitmap && attention) paint(canvas, bitmap, attention.crop, null, null);
  const words = attention ? attention.words : result.caption.split(" ");
  let pinned = null;
  const show = (index) => {
    if (!bitmap || !attention) return;
    paint(canvas, bitmap, attention.crop, index === null ? null : attention.weights[index], attention.grid);
    card.dataset.mapWord = index === null ? "" : words[index];
  };
  words.forEach((word, index) => {
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = word;
    if (attention) {
      span.addEventListener("mouseenter", () => show(index));
      span.addEventListener("mouseleave", () => show(pinned));
      span.addEventListener("click", () => {
        pinned = pinned === index ? null : index;
        caption.querySelectorAll(".word").forEach((s, i) => s.classList.toggle("pinned", i === pinned));
        show(pinned);
      });
    }
    caption.append(span, " ");
  });
  card.querySelector(".map-label").hidden = !attention;
  const list = card.querySelector(".candidates");
  for (const candidate of result.candidates) {
    const item = document.createElement("li");
    item.textContent = candidate.caption;
    const score = document.createElement("span");
    score.className = "logprob";
    score.textContent = `log p = ${candidate.logprob.toFixed(2)}`;
    item.append(score);
    list.append(item);
  }
  card.querySelector(".more").hidden = result.candidates.length < 2;
  card.querySelector(".more").open = true;
  card.querySelector(".timing").textContent =
    `${answer.model} on ${answer.encoder}: ${Math.round(result.ms)} ms to caption, ${Math.round(answer.ms)} ms on the server`;
  card.classList.add("done");
}

// ---- the camera (getUserMedia): a frame of the video becomes a photo like any other ----

async function startCamera() {
  notice("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    notice("This browser cannot use a camera here (a camera needs https or localhost).");
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    $("video").srcObject = stream;
    $("camera").hidden = false;
  } catch (err) {
    notice("The camera could not be opened: " + (err.message || err.name));
  }
}

function stopCamera() {
  const stream = $("video").srcObject;
  if (stream) stream.getTracks().forEach((track) => track.stop());
  $("video").srcObject = null;
  $("camera").hidden = true;
}

function snapCamera() {
  const video = $("video");
  if (!video.videoWidth) { notice("The camera has not started yet."); return; }
  const frame = document.createElement("canvas");
  frame.width = video.videoWidth; frame.height = video.videoHeight;
  frame.getContext("2d").drawImage(video, 0, 0);
  frame.toBlob((blob) => captionPhoto(blob, "camera " + new Date().toLocaleTimeString()), "image/jpeg", 0.92);
}
