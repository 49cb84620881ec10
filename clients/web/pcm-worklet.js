// Runs on the audio thread: resamples the microphone (usually 44.1 or 48 kHz) to 16 kHz mono PCM16
// and posts ~40 ms chunks, so the main thread never touches individual samples.

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, chunkMs = 40 } = options.processorOptions || {};
    this.step = sampleRate / targetRate; // input samples per output sample
    this.position = 0; // fractional read position into the pending input
    this.pending = new Float32Array(0);
    this.chunk = new Int16Array(Math.round((targetRate * chunkMs) / 1000));
    this.filled = 0;
    this.energy = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    const samples = new Float32Array(this.pending.length + input.length);
    samples.set(this.pending);
    samples.set(input, this.pending.length);
    let position = this.position;
    while (position + 1 < samples.length) {
      // Linear interpolation; the browser's capture path already low-passes speech well enough.
      const i = Math.floor(position);
      const frac = position - i;
      const value = samples[i] * (1 - frac) + samples[i + 1] * frac;
      const clipped = Math.max(-1, Math.min(1, value));
      this.chunk[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
      this.energy += clipped * clipped;
      if (this.filled === this.chunk.length) this.flush();
      position += this.step;
    }
    const consumed = Math.floor(position);
    this.pending = samples.slice(consumed);
    this.position = position - consumed;
    return true;
  }

  flush() {
    const pcm = this.chunk.slice().buffer;
    const level = Math.sqrt(this.energy / this.chunk.length);
    this.port.postMessage({ pcm, level }, [pcm]);
    this.filled = 0;
    this.energy = 0;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
