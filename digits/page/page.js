// The drawing page of stages/serve.py: draw (or drop a picture), and see what the network reads.
//
// The page does no image processing of its own: it sends the square as a PNG
// (or a dropped file as it is) to POST /v1/models/digits:predict_picture, and
// the server answers with the probabilities and the 28 x 28 image the network
// was given, made by digits/images.py exactly as `python -m stages.predict`
// makes it. So the picture shown beside the square is the network's input, not
// a second implementation of it.
"use strict";

const PICTURE_URL = "/v1/models/digits:predict_picture";
const METADATA_URL = "/v1/models/digits/metadata";
const PEN_WIDTH = 22; // on the 280-pixel square: about 2 MNIST pixels once a digit is scaled into 20 x 20
const PAUSE_MS = 60; // at most one request in flight, and one more this long after the drawing last changed

const pad = document.getElementById("pad");
const padContext = pad.getContext("2d");
const seen = document.getElementById("seen");
const seenContext = seen.getContext("2d");
const digitOutput = document.getElementById("digit");
const statusLine = document.getElementById("status");
const undoButton = document.getElementById("undo");
const clearButton = document.getElementById("clear");
const fileInput = document.getElementById("file");

// What is on the square: strokes ({points}) and at most one picture ({picture, file}), in the order made
let actions = [];
let stroke = null; // the stroke being drawn
let version = 0; // counts changes to the square; document.body.dataset.answered says which one is shown
let inFlight = false;
let timer = null;

// Drawing

function redraw() {
  padContext.fillStyle = "#fff";
  padContext.fillRect(0, 0, pad.width, pad.height);
  padContext.lineWidth = PEN_WIDTH;
  padContext.lineCap = "round";
  padContext.lineJoin = "round";
  padContext.strokeStyle = "#000";
  for (const action of actions) {
    if (action.picture) {
      drawPicture(action.picture);
    } else {
      const [first, ...rest] = action.points;
      padContext.beginPath();
      padContext.moveTo(first.x, first.y);
      for (const point of rest.length ? rest : [first]) padContext.lineTo(point.x, point.y);
      padContext.stroke();
    }
  }
  undoButton.disabled = clearButton.disabled = actions.length === 0;
}

function drawPicture(picture) {
  const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
  const width = picture.width * scale;
  const height = picture.height * scale;
  padContext.drawImage(picture, (pad.width - width) / 2, (pad.height - height) / 2, width, height);
}

function pointOf(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

pad.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  pad.setPointerCapture(event.pointerId);
  stroke = { points: [pointOf(event)] };
  actions.push(stroke);
  changed();
});

pad.addEventListener("pointermove", (event) => {
  if (!stroke) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) stroke.points.push(pointOf(each));
  changed();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (stroke) changed();
    stroke = null;
  });
}

// Undo, clear, pictures

undoButton.addEventListener("click", () => {
  actions.pop();
  changed();
});
clearButton.addEventListener("click", () => {
  actions = [];
  changed();
});
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z" && actions.length) {
    event.preventDefault();
    actions.pop();
    changed();
  }
});

async function openPicture(file) {
  let picture = null;
  try {
    picture = await createImageBitmap(file);
  } catch {
    // not something the browser can show; the server still says what is wrong with it
  }
  actions = [{ picture, file }];
  changed();
}

fileInput.addEventListener("change", () => {
  if (fileInput.files.length) openPicture(fileInput.files[0]);
  fileInput.value = "";
});
pad.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("dropping");
});
pad.addEventListener("dragleave", () => pad.classList.remove("dropping"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dropping");
  if (event.dataTransfer.files.length) openPicture(event.dataTransfer.files[0]);
});

// Asking the model, while the drawing changes

function changed() {
  version += 1;
  pad.dataset.version = version;
  redraw();
  if (!timer && !inFlight) timer = setTimeout(ask, PAUSE_MS);
}

async function ask() {
  timer = null;
  const asked = version;
  if (actions.length === 0) {
    show(asked, null, "Draw a digit to start.");
    return;
  }
  inFlight = true;
  try {
    // A picture alone goes as its own bytes, read as `stages.predict` reads a file; anything drawn goes as the square
    const only = actions.length === 1 && actions[0].file;
    const body = only ? actions[0].file : await new Promise((done) => pad.toBlob(done, "image/png"));
    const response = await fetch(PICTURE_URL, {
      method: "POST",
      headers: { "Content-Type": (only && body.type) || "image/png" },
      body,
    });
    const answer = await response.json();
    show(asked, response.ok ? answer : null, response.ok ? "" : answer.error);
  } catch (error) {
    show(asked, null, `The server did not answer (${error.message}); is stages.serve still running?`);
  } finally {
    inFlight = false;
    if (version !== asked && !timer) timer = setTimeout(ask, PAUSE_MS);
  }
}

// Showing the answer

const bars = [];
for (let digit = 0; digit < 10; digit += 1) {
  const item = document.createElement("li");
  item.innerHTML = '<span class="label"></span><span class="track"><span class="bar"></span></span><span class="value"></span>';
  item.querySelector(".label").textContent = digit;
  document.getElementById("bars").append(item);
  bars.push(item);
}

function show(asked, answer, message) {
  statusLine.textContent = message;
  statusLine.classList.toggle("error", Boolean(answer === null && actions.length));
  digitOutput.textContent = answer ? answer.digit : "–";
  bars.forEach((item, digit) => {
    const probability = answer ? answer.probabilities[digit] : 0;
    item.classList.toggle("top", Boolean(answer) && digit === answer.digit);
    item.querySelector(".bar").style.width = `${(probability * 100).toFixed(1)}%`;
    item.querySelector(".value").textContent = answer ? `${(probability * 100).toFixed(1)} %` : "";
  });
  const pixels = seenContext.createImageData(28, 28);
  if (answer) {
    answer.preprocessed.flat().forEach((grey, index) => pixels.data.set([grey, grey, grey, 255], index * 4));
  } else {
    for (let index = 3; index < pixels.data.length; index += 4) pixels.data[index] = 255;
  }
  seenContext.putImageData(pixels, 0, 0);
  document.body.dataset.answered = asked;
}

// Which model answers

fetch(METADATA_URL)
  .then((response) => response.json())
  .then((metadata) => {
    const pipeline = metadata.metadata.pipeline;
    const parts = [];
    if (pipeline.weights_md5) parts.push(`weights md5 ${pipeline.weights_md5.slice(0, 12)} (dvc.lock)`);
    if (pipeline.test_accuracy !== null) {
      parts.push(`test accuracy ${(pipeline.test_accuracy * 100).toFixed(2)} % (metrics/evaluate.json)`);
    }
    document.getElementById("model").textContent = `${pipeline.saved_model}: ${parts.join(" · ") || "no pipeline record"}`;
  })
  .catch(() => {
    document.getElementById("model").textContent = "the model: no answer from the server";
  });

pad.dataset.version = version;
redraw();
show(version, null, "Draw a digit to start.");
