// Audio both ways: gapless playback of the model's PCM16 (24 kHz) and microphone capture as
// 16 kHz PCM16 through an AudioWorklet (the main thread only base64-encodes and sends).

/** The rate in `audio/pcm;rate=24000`; output audio without one is 24 kHz, input 16 kHz. */
export function pcmRate(mimeType, fallback = 24000) {
  const match = /rate=(\d+)/i.exec(mimeType || "");
  return match ? Number(match[1]) : fallback;
}

/** PCM16 samples and rate from a WAV file (RIFF, 16-bit, first channel), or null if not one. */
export function parseWav(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") return null;
  let rate = 0;
  let channels = 1;
  let bits = 0;
  for (let offset = 12; offset + 8 <= bytes.length; ) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === "fmt ") {
      channels = view.getUint16(body + 2, true);
      rate = view.getUint32(body + 4, true);
      bits = view.getUint16(body + 14, true);
    } else if (id === "data" && bits === 16) {
      const frames = Math.floor(Math.min(size, bytes.length - body) / (2 * channels));
      const samples = new Int16Array(frames);
      for (let i = 0; i < frames; i++) samples[i] = view.getInt16(body + i * 2 * channels, true);
      return { samples, rate };
    }
    offset = body + size + (size % 2);
  }
  return null;
}

/** Little-endian PCM16 bytes as samples (copies when the bytes are not 2-aligned). */
export function pcm16Samples(bytes) {
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  return new Int16Array(aligned.buffer, aligned.byteOffset, Math.floor(aligned.byteLength / 2));
}

/** Queues chunks back to back on one AudioContext; `flush()` on interruption drops what is queued. */
export class AudioPlayer {
  constructor() {
    this.context = null;
    this.nextTime = 0;
    this.sources = new Set();
    this.stats = { chunks: 0, samples: 0, seconds: 0, sampleRates: [], flushed: 0 };
    this.onchange = null;
  }

  /** Call from a user gesture (autoplay policy) before audio arrives. */
  resume() {
    if (!this.context) this.context = new AudioContext({ latencyHint: "interactive" });
    if (this.context.state === "suspended") this.context.resume();
    return this.context;
  }

  enqueue(samples, rate) {
    const context = this.resume();
    const buffer = context.createBuffer(1, samples.length, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32768;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const start = Math.max(context.currentTime + 0.02, this.nextTime);
    source.start(start);
    this.nextTime = start + buffer.duration;
    this.sources.add(source);
    source.onended = () => {
      this.sources.delete(source);
      this.onchange?.();
    };
    this.stats.chunks += 1;
    this.stats.samples += samples.length;
    this.stats.seconds += buffer.duration;
    if (!this.stats.sampleRates.includes(rate)) this.stats.sampleRates.push(rate);
    this.onchange?.();
    return buffer.duration;
  }

  get playing() {
    return this.sources.size > 0;
  }

  flush() {
    for (const source of this.sources) {
      try {
        source.stop();
      } catch {
        /* already stopped */
      }
    }
    this.stats.flushed += this.sources.size;
    this.sources.clear();
    this.nextTime = 0;
    this.onchange?.();
  }
}

/** Microphone -> AudioWorklet -> 16 kHz PCM16 chunks handed to `onchunk(Uint8Array)`. */
export class MicCapture {
  constructor({ onchunk, onlevel }) {
    this.onchunk = onchunk;
    this.onlevel = onlevel;
    this.context = null;
    this.stream = null;
    this.node = null;
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.context = new AudioContext({ latencyHint: "interactive" });
    await this.context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "pcm16-capture", {
      processorOptions: { targetRate: 16000, chunkMs: 40 },
    });
    this.node.port.onmessage = ({ data }) => {
      this.onchunk(new Uint8Array(data.pcm));
      this.onlevel?.(data.level);
    };
    source.connect(this.node);
  }

  async stop() {
    this.node?.disconnect();
    this.stream?.getTracks().forEach((track) => track.stop());
    await this.context?.close();
    this.node = this.stream = this.context = null;
  }
}
