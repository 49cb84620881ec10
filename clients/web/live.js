// The Live API wire protocol for the browser: one WebSocket, JSON messages, nothing private.
// Browsers cannot set headers on a WebSocket, so the key travels as `?key=` (as Google's raw samples do).

export const LIVE_PATH = (version) =>
  `/ws/google.ai.generativelanguage.${version}.GenerativeService.BidiGenerateContent`;

const decoder = new TextDecoder();

/** Base64 of bytes (standard alphabet), in chunks so large buffers don't overflow the call stack. */
export function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Bytes of base64 in either alphabet, padded or not (the protocol allows all four). */
export function fromBase64(text) {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/").replace(/\s+/g, "");
  const binary = atob(standard + "=".repeat((4 - (standard.length % 4)) % 4));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/**
 * One Live session. Events: "frame" {direction, text, message}, "open", "setupcomplete",
 * "message" (every parsed server message), "close" {code, reason}.
 */
export class LiveSession extends EventTarget {
  constructor({ server, version, key, setup }) {
    super();
    this.url = `${server.replace(/\/+$/, "")}${LIVE_PATH(version)}?key=${encodeURIComponent(key)}`;
    this.setup = setup;
    this.ready = false;
    this.ws = null;
  }

  connect() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.emit("open");
      this.send({ setup: this.setup });
    });
    ws.addEventListener("message", (event) => this.onFrame(event.data));
    ws.addEventListener("close", (event) => {
      this.ready = false;
      this.emit("close", { code: event.code, reason: event.reason, clean: event.wasClean });
    });
  }

  onFrame(data) {
    // The server sends binary frames of UTF-8 JSON; accept text frames as well.
    const text = typeof data === "string" ? data : decoder.decode(data);
    let message;
    try {
      message = text ? JSON.parse(text) : {};
    } catch {
      this.emit("frame", { direction: "in", text, message: null, error: "not JSON" });
      return;
    }
    this.emit("frame", { direction: "in", text, message });
    if (message.setupComplete) {
      this.ready = true;
      this.emit("setupcomplete", message.setupComplete);
    }
    this.emit("message", message);
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    const text = JSON.stringify(message);
    this.ws.send(text);
    this.emit("frame", { direction: "out", text, message });
    return true;
  }

  sendText(text) {
    return this.send({ clientContent: { turns: [{ role: "user", parts: [{ text }] }], turnComplete: true } });
  }

  /** New content with no turn: the protocol's way to cut the model off without asking anything. */
  interrupt() {
    return this.send({ clientContent: { turns: [], turnComplete: false } });
  }

  sendAudio(pcm16Bytes, rate = 16000) {
    return this.send({ realtimeInput: { audio: { data: toBase64(pcm16Bytes), mimeType: `audio/pcm;rate=${rate}` } } });
  }

  endAudioStream() {
    return this.send({ realtimeInput: { audioStreamEnd: true } });
  }

  sendToolResponse(functionResponses) {
    return this.send({ toolResponse: { functionResponses } });
  }

  close() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "client closed");
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
