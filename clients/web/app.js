// The console page: settings -> setup message, server messages -> conversation and frame log.

import { AudioPlayer, MicCapture, parseWav, pcm16Samples, pcmRate } from "./audio.js";
import { highlightPython } from "./highlight.js";
import { fromBase64, LiveSession } from "./live.js";
import { answer, DEMO_FUNCTIONS } from "./tools.js";

const $ = (id) => document.getElementById(id);
const MAX_FRAMES = 1000;
const OUTCOME_LABEL = {
  OUTCOME_OK: "OK",
  OUTCOME_FAILED: "Failed",
  OUTCOME_DEADLINE_EXCEEDED: "Deadline exceeded",
  OUTCOME_UNSPECIFIED: "Unspecified",
};

const SPEAKER =
  '<svg aria-hidden="true" width="14" height="14" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2">' +
  '<path d="M4 9h4l5-4v14l-5-4H4z"/><path d="M16 9a4 4 0 0 1 0 6M19 6a8 8 0 0 1 0 12"/></svg>';

const state = {
  session: null,
  turn: null, // the <li> of the model turn being streamed
  textEl: null, // the text block text is appended to
  turnStarted: 0,
  resumeHandle: null,
  goAway: false,
  frames: [],
  calls: new Map(), // function call id -> its card
  mic: null,
};
const player = new AudioPlayer();

// A stable handle for tests and for poking at the protocol from DevTools.
window.openlive = { state, player, get audio() { return player.stats; } };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "html") node.innerHTML = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter(Boolean));
  return node;
}

// ---------- status and settings ----------

function setStatus(stateName, text) {
  $("status").dataset.state = stateName;
  $("status-text").textContent = text;
  const connected = stateName === "ready" || stateName === "busy";
  $("prompt").disabled = $("send").disabled = $("mic").disabled = !connected;
  $("stop").disabled = stateName !== "busy";
  $("prompt").placeholder = connected ? "Message the model (Enter to send, Shift+Enter for a new line)" : "Connect to start…";
  $("connect").textContent = stateName === "idle" || stateName === "closed" ? "Connect" : "Disconnect";
}

function showBanner(text, kind = "info") {
  const banner = $("banner");
  banner.textContent = text;
  banner.dataset.kind = kind;
  banner.hidden = !text;
}

function buildSetup() {
  const modality = document.querySelector("input[name=modality]:checked").value;
  const tools = [];
  if ($("tool-code").checked) tools.push({ codeExecution: {} });
  const declarations = [...document.querySelectorAll("#function-tools input:checked")].map(
    (box) => DEMO_FUNCTIONS[box.value].declaration,
  );
  if (declarations.length) tools.push({ functionDeclarations: declarations });
  const model = $("model").value.trim();
  const setup = {
    model: model.startsWith("models/") ? model : `models/${model}`,
    generationConfig: { responseModalities: [modality] },
    tools,
    inputAudioTranscription: {},
  };
  if (modality === "AUDIO") setup.outputAudioTranscription = {};
  const system = $("system").value.trim();
  if (system) setup.systemInstruction = { parts: [{ text: system }] };
  if ($("resumption").checked) setup.sessionResumption = state.resumeHandle ? { handle: state.resumeHandle } : {};
  return setup;
}

function connect() {
  player.resume(); // inside the click: browsers only start audio from a user gesture
  const server = $("server").value.trim();
  localStorage.setItem("openlive.server", server);
  const session = new LiveSession({ server, version: $("version").value, key: $("key").value, setup: buildSetup() });
  state.session = session;
  state.goAway = false;
  setStatus("connecting", "Connecting…");
  session.addEventListener("frame", (e) => logFrame(e.detail));
  session.addEventListener("setupcomplete", () => {
    setStatus("ready", state.resumeHandle ? "Connected (resumed)" : "Connected");
    showBanner("");
    $("prompt").focus();
  });
  session.addEventListener("message", (e) => onMessage(e.detail));
  session.addEventListener("close", (e) => onClose(session, e.detail));
  session.connect();
}

function disconnect() {
  stopMic();
  state.session?.close();
}

function onClose(session, { code, reason }) {
  if (session !== state.session) return;
  stopMic();
  endTurn(null);
  state.session = null;
  setStatus("closed", `Closed ${code}${reason ? ` · ${reason}` : ""}`);
  if (code !== 1000 && code !== 1005) showBanner(`Connection closed with ${code}${reason ? `: ${reason}` : ""}`, "error");
  if (state.goAway && state.resumeHandle && $("resumption").checked) {
    addNote("Reconnecting with the session resumption handle…", "resume");
    connect();
  }
}

// ---------- conversation ----------

function addItem(node) {
  $("empty")?.remove();
  const log = $("log");
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  log.append(node);
  if (stick) log.scrollTop = log.scrollHeight;
  return node;
}

function addNote(text, kind) {
  return addItem(el("li", { class: `note note-${kind}`, text }));
}

function addUser(text, label = "You") {
  addItem(el("li", { class: "turn user" }, el("div", { class: "who", text: label }), el("div", { class: "bubble", text })));
}

function currentTurn() {
  if (!state.turn) {
    state.turnStarted = performance.now();
    state.turn = addItem(
      el("li", { class: "turn model", "aria-busy": "true" }, el("div", { class: "who", text: "Model" }), el("div", { class: "parts" })),
    );
    state.textEl = null;
    setStatus("busy", "Model is responding…");
  }
  return state.turn.querySelector(".parts");
}

function addPart(node) {
  currentTurn().append(node);
  state.textEl = null;
  const log = $("log");
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 240) log.scrollTop = log.scrollHeight;
  return node;
}

function appendText(text, thought) {
  const parts = currentTurn();
  if (!state.textEl || state.textEl.classList.contains("thought") !== Boolean(thought)) {
    state.textEl = el("div", { class: thought ? "part text thought" : "part text" });
    parts.append(state.textEl);
  }
  state.textEl.textContent += text;
}

function renderCode({ code = "", language = "PYTHON" }) {
  const pre = el("pre", {}, el("code", { class: "hl", html: highlightPython(code) }));
  const copy = el("button", { type: "button", class: "ghost small copy", text: "Copy" });
  copy.addEventListener("click", () => navigator.clipboard?.writeText(code));
  addPart(el("figure", { class: "part code" }, el("figcaption", {}, el("span", { text: `${language.toLowerCase()} · code` }), copy), pre));
}

function renderResult({ outcome = "OUTCOME_OK", output = "" }) {
  const kind = outcome === "OUTCOME_OK" ? "ok" : outcome === "OUTCOME_DEADLINE_EXCEEDED" ? "deadline" : "failed";
  addPart(
    el(
      "figure",
      { class: `part result ${kind}`, "data-outcome": outcome },
      el("figcaption", {}, el("span", { class: "badge", text: OUTCOME_LABEL[outcome] || outcome }), el("span", { text: "result" })),
      el("pre", { class: "output", text: output || "(no output)" }),
    ),
  );
}

function renderInlineData({ mimeType = "application/octet-stream", data = "", displayName }) {
  const mime = mimeType.toLowerCase();
  if (mime.startsWith("audio/")) return playAudio(mime, data);
  if (mime.startsWith("image/")) {
    const img = el("img", { class: "inline-image", alt: displayName || "figure from the code", src: `data:${mime};base64,${data}` });
    return addPart(el("figure", { class: "part image" }, img, displayName ? el("figcaption", { text: displayName }) : null));
  }
  const bytes = fromBase64(data);
  const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
  const name = displayName || "file";
  addPart(el("div", { class: "part file" }, el("a", { href: url, download: name, text: `⤓ ${name}` }), el("span", { class: "meta", text: ` ${mime}, ${bytes.length} bytes` })));
}

function playAudio(mime, data) {
  const bytes = fromBase64(data);
  const decoded = mime.startsWith("audio/pcm") || mime.startsWith("audio/l16")
    ? { samples: pcm16Samples(bytes), rate: pcmRate(mime) }
    : parseWav(bytes);
  if (!decoded) return renderInlineData({ mimeType: `${mime}+unplayable`, data });
  player.enqueue(decoded.samples, decoded.rate);
  let chip = state.turn?.querySelector(".part.audio");
  if (!chip) chip = addPart(el("div", { class: "part audio", role: "img", "aria-label": "audio reply" }));
  chip.innerHTML = SPEAKER;
  chip.append(` ${player.stats.seconds.toFixed(1)} s of audio · ${decoded.rate / 1000} kHz · ${player.stats.chunks} chunks`);
}

function renderTranscription(text, who) {
  if (!text) return;
  const parts = currentTurn();
  const cls = `part transcript ${who}`;
  let node = parts.lastElementChild;
  if (!node || node.className !== cls) {
    node = el("div", { class: cls }, el("span", { class: "label", text: who === "input" ? "You said" : "Said" }), el("span", { class: "words" }));
    parts.append(node);
  }
  node.querySelector(".words").textContent += text;
}

function renderToolCall(calls) {
  const responses = [];
  for (const call of calls) {
    const result = answer(call);
    const card = addPart(
      el(
        "div",
        { class: "part tool", "data-call": call.id || "" },
        el("div", { class: "tool-head" }, el("span", { class: "badge", text: "function call" }), el("code", { text: `${call.name}(${JSON.stringify(call.args || {})})` })),
        el("div", { class: "tool-answer" }, el("span", { class: "label", text: "answered" }), el("code", { text: JSON.stringify(result) })),
      ),
    );
    state.calls.set(call.id, card);
    responses.push({ id: call.id, name: call.name, response: result });
  }
  state.session?.sendToolResponse(responses);
}

function endTurn(message) {
  const turn = state.turn;
  if (!turn) return;
  turn.removeAttribute("aria-busy");
  if (message) {
    const seconds = ((performance.now() - state.turnStarted) / 1000).toFixed(2);
    const usage = message.usageMetadata;
    const tokens = usage?.totalTokenCount != null ? ` · ${usage.totalTokenCount} tokens` : "";
    turn.append(el("div", { class: "turn-meta", text: `turn complete · ${seconds} s${tokens}` }));
  }
  state.turn = state.textEl = null;
  if (state.session?.ready) setStatus("ready", "Connected");
}

function onMessage(message) {
  const content = message.serverContent;
  if (content) {
    for (const part of content.modelTurn?.parts || []) {
      if (part.text != null) appendText(part.text, part.thought);
      if (part.executableCode) renderCode(part.executableCode);
      if (part.codeExecutionResult) renderResult(part.codeExecutionResult);
      if (part.inlineData) renderInlineData(part.inlineData);
    }
    renderTranscription(content.inputTranscription?.text, "input");
    renderTranscription(content.outputTranscription?.text, "output");
    if (content.interrupted) {
      player.flush();
      addPart(el("div", { class: "part interrupted", text: "■ interrupted" }));
    }
    if (content.generationComplete) state.turn?.classList.add("generated");
    if (content.turnComplete) endTurn(message);
  }
  if (message.toolCall) renderToolCall(message.toolCall.functionCalls || []);
  if (message.toolCallCancellation) {
    for (const id of message.toolCallCancellation.ids || []) state.calls.get(id)?.classList.add("cancelled");
  }
  if (message.goAway) {
    state.goAway = true;
    showBanner(`The server will close this connection in ${message.goAway.timeLeft}.`, "warn");
    addNote(`goAway · time left ${message.goAway.timeLeft}`, "goaway");
  }
  const update = message.sessionResumptionUpdate;
  if (update && update.resumable !== false && update.newHandle) {
    state.resumeHandle = update.newHandle;
    const hint = $("resume-handle");
    hint.hidden = false;
    hint.textContent = `Resumable · handle ${update.newHandle.slice(0, 12)}…`;
  }
}

// ---------- input ----------

function send(text) {
  if (!text.trim() || !state.session?.ready) return;
  player.resume();
  if (state.turn) endTurn(null); // new content interrupts the current turn, as the protocol says
  addUser(text);
  state.session.sendText(text);
}

async function toggleMic() {
  if (state.mic) return stopMic();
  player.resume();
  const mic = new MicCapture({
    onchunk: (pcm) => state.session?.sendAudio(pcm, 16000),
    onlevel: (level) => $("level").style.setProperty("--level", Math.min(1, level * 4).toFixed(2)),
  });
  try {
    await mic.start();
  } catch (error) {
    showBanner(`Microphone unavailable: ${error.message}`, "error");
    return;
  }
  state.mic = mic;
  $("mic").setAttribute("aria-pressed", "true");
  addNote("Microphone on · streaming 16 kHz PCM", "mic");
}

function stopMic() {
  if (!state.mic) return;
  state.mic.stop();
  state.mic = null;
  $("mic").setAttribute("aria-pressed", "false");
  state.session?.endAudioStream();
  addNote("Microphone off", "mic");
}

// ---------- frames ----------

function summarize(message) {
  if (!message) return "(not JSON)";
  const keys = Object.keys(message);
  if (!keys.length) return "{}";
  return keys
    .map((key) => {
      const value = message[key] || {};
      if (key === "serverContent" || key === "clientContent" || key === "realtimeInput") {
        const parts = (value.modelTurn?.parts || value.turns?.flatMap((t) => t.parts || []) || []).map((p) => Object.keys(p)[0]);
        const flags = Object.keys(value).filter((k) => value[k] !== false && !["role", "modelTurn", "turns"].includes(k));
        const short = key === "serverContent" ? "" : `${key} `;
        return short + [parts.length ? parts.join("+") : "", ...flags].filter(Boolean).join(" · ");
      }
      if (key === "toolCall") return `toolCall ${(value.functionCalls || []).map((c) => c.name).join(", ")}`;
      return key;
    })
    .join(" + ");
}

function shorten(key, value) {
  return key === "data" && typeof value === "string" && value.length > 96 ? `${value.slice(0, 48)}… (${value.length} chars)` : value;
}

function logFrame({ direction, text, message }) {
  const entry = { direction, size: new TextEncoder().encode(text).length, time: new Date(), summary: summarize(message), text, message };
  state.frames.push(entry);
  if (state.frames.length > MAX_FRAMES) state.frames.shift();
  $("frame-count").textContent = state.frames.length;
  const list = $("frame-list");
  const item = frameItem(entry);
  const filter = $("frame-filter").value.trim().toLowerCase();
  item.hidden = Boolean(filter) && !entry.summary.toLowerCase().includes(filter);
  list.append(item);
  while (list.children.length > MAX_FRAMES) list.firstElementChild.remove();
  if (list.scrollHeight - list.scrollTop - list.clientHeight < 80) list.scrollTop = list.scrollHeight;
}

function frameItem(entry) {
  const time = entry.time.toTimeString().slice(0, 8) + "." + String(entry.time.getMilliseconds()).padStart(3, "0");
  const head = el(
    "button",
    { type: "button", class: "frame-head", "aria-expanded": "false" },
    el("span", { class: "dir", text: entry.direction === "in" ? "↓" : "↑", title: entry.direction === "in" ? "server → client" : "client → server" }),
    el("span", { class: "summary", text: entry.summary }),
    el("span", { class: "meta", text: `${entry.size} B · ${time}` }),
  );
  const item = el("li", { class: `frame ${entry.direction}`, "data-summary": entry.summary }, head);
  head.addEventListener("click", () => {
    let body = item.querySelector("pre");
    if (!body) {
      body = el("pre", { text: entry.message ? JSON.stringify(entry.message, shorten, 2) : entry.text });
      item.append(body);
    } else body.hidden = !body.hidden;
    head.setAttribute("aria-expanded", String(!body.hidden));
  });
  return item;
}

// ---------- wiring ----------

function init() {
  const origin = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
  const params = new URLSearchParams(location.search);
  $("server").value = params.get("server") || localStorage.getItem("openlive.server") || origin;
  $("key").value = params.get("key") || "";
  for (const [name, fn] of Object.entries(DEMO_FUNCTIONS)) {
    $("function-tools").append(
      el("label", { class: "check" }, el("input", { type: "checkbox", value: name, ...(name !== "get_time" ? { checked: "" } : {}) }), ` ${name}`, el("span", { class: "hint", text: ` ${fn.declaration.description}` })),
    );
  }
  $("connect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.session) disconnect();
    else connect();
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send($("prompt").value);
    $("prompt").value = "";
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.session?.interrupt());
  $("mic").addEventListener("click", toggleMic);
  for (const button of document.querySelectorAll(".sample")) {
    button.addEventListener("click", () => {
      if (state.session?.ready) send(button.textContent);
      else $("prompt").value = button.textContent;
    });
  }
  $("frame-filter").addEventListener("input", () => {
    const filter = $("frame-filter").value.trim().toLowerCase();
    for (const item of $("frame-list").children) item.hidden = Boolean(filter) && !item.dataset.summary.toLowerCase().includes(filter);
  });
  $("clear-frames").addEventListener("click", () => {
    state.frames.length = 0;
    $("frame-list").replaceChildren();
    $("frame-count").textContent = "0";
  });
  $("toggle-frames").addEventListener("click", () => {
    const hidden = document.body.classList.toggle("no-frames");
    $("toggle-frames").setAttribute("aria-expanded", String(!hidden));
  });
  setStatus("idle", "Not connected");
}

init();
