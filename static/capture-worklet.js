// Microphone capture: resample the AudioContext rate (usually 48 kHz) to the call rate
// (16 kHz) and post Int16 LE PCM frames of `frameMs`. Runs on the audio thread, so the
// UI thread never touches raw samples. A windowed-sinc low-pass runs before decimation:
// without it, everything above 8 kHz folds back into the speech band as noise.

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.frameSamples = Math.round((this.targetRate * (opts.frameMs || 40)) / 1000);
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.taps = this.step > 1 ? designLowPass(this.step) : new Float32Array([1]);
    this.history = new Float32Array(this.taps.length); // ring of raw input
    this.hpos = 0;
    this.filtered = new Float32Array(4096); // filtered input not yet consumed
    this.flen = 0;
    this.pos = 0; // fractional read position in `filtered`
    this.frame = new Int16Array(this.frameSamples);
    this.fpos = 0;
    this.active = true;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "stop") this.active = false;
    };
  }

  process(inputs) {
    if (!this.active) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    const taps = this.taps;
    const n = taps.length;
    for (let i = 0; i < ch.length; i++) {
      this.history[this.hpos] = ch[i];
      this.hpos = (this.hpos + 1) % n;
      let acc = 0;
      let h = this.hpos;
      for (let k = 0; k < n; k++) {
        acc += taps[k] * this.history[h];
        h = h + 1 === n ? 0 : h + 1;
      }
      if (this.flen === this.filtered.length) this.compact(true);
      this.filtered[this.flen++] = acc;
    }
    while (this.pos + 1 < this.flen) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const v = this.filtered[i] + (this.filtered[i + 1] - this.filtered[i]) * frac;
      this.emit(v);
      this.pos += this.step;
    }
    this.compact(false);
    return true;
  }

  compact(force) {
    const drop = Math.min(Math.floor(this.pos), this.flen);
    if (drop > 0) {
      this.filtered.copyWithin(0, drop, this.flen);
      this.flen -= drop;
      this.pos -= drop;
    } else if (force) {
      this.flen = 0;
      this.pos = 0;
    }
  }

  emit(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.frame[this.fpos++] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
    if (this.fpos === this.frameSamples) {
      const out = this.frame;
      this.port.postMessage(out.buffer, [out.buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.fpos = 0;
    }
  }
}

// Blackman-windowed sinc, cutoff a little under the target Nyquist.
function designLowPass(step) {
  const half = Math.ceil(6 * step);
  const n = 2 * half + 1;
  const fc = 0.46 / step; // cycles per input sample
  const taps = new Float32Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const m = i - half;
    const sinc = m === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * m) / (Math.PI * m);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (n - 1));
    taps[i] = sinc * w;
    sum += taps[i];
  }
  for (let i = 0; i < n; i++) taps[i] /= sum;
  return taps;
}

registerProcessor("pcm-capture", CaptureProcessor);
