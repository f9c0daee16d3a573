// Bot audio playback: Int16 PCM chunks at the call rate are queued and played from the
// first chunk on (no waiting for the whole reply), resampled to the AudioContext rate
// with cubic interpolation. It counts what it has really played and reports it, so the
// server's echo gate and latency figures follow actual playout, not a guess.

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.sourceRate = opts.sourceRate || 16000;
    this.step = this.sourceRate / sampleRate; // source samples per output sample
    this.reportEvery = Math.round((sampleRate * (opts.reportMs || 100)) / 1000);
    this.buf = new Float32Array(this.sourceRate * 20); // queued source samples (grows)
    this.len = 0;
    this.pos = 0; // fractional read position in `buf`
    this.played = 0; // source samples played since the last reset
    this.sinceReport = 0;
    this.playing = false;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg instanceof ArrayBuffer) {
      this.append(new Int16Array(msg));
    } else if (msg && msg.type === "clear") {
      this.len = 0;
      this.pos = 0;
      this.finishRun();
    } else if (msg && msg.type === "reset") {
      this.len = 0;
      this.pos = 0;
      this.played = 0;
      this.playing = false;
      this.port.postMessage({ type: "played", playedMs: 0, playing: false });
    }
  }

  append(pcm) {
    if (!pcm.length) return;
    if (Math.floor(this.pos) >= this.len) this.pos = this.len; // idle: start at the new audio
    if (this.len + pcm.length > this.buf.length) {
      const keep = Math.max(0, Math.floor(this.pos) - 1); // keep one sample of history
      this.buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.pos -= keep;
      if (this.len + pcm.length > this.buf.length) {
        const bigger = new Float32Array(Math.max(this.buf.length * 2, this.len + pcm.length));
        bigger.set(this.buf.subarray(0, this.len));
        this.buf = bigger;
      }
    }
    for (let i = 0; i < pcm.length; i++) this.buf[this.len + i] = pcm[i] / 32768;
    this.len += pcm.length;
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const buf = this.buf;
    for (let o = 0; o < out.length; o++) {
      const i = Math.floor(this.pos);
      if (i >= this.len) {
        out[o] = 0;
        continue;
      }
      if (!this.playing) {
        this.playing = true;
        this.sinceReport = 0;
      }
      const t = this.pos - i;
      const y0 = i > 0 ? buf[i - 1] : 0;
      const y1 = buf[i];
      const y2 = i + 1 < this.len ? buf[i + 1] : 0;
      const y3 = i + 2 < this.len ? buf[i + 2] : 0;
      // Catmull-Rom: smooth enough for speech, cheap enough for the audio thread.
      out[o] = y1 + 0.5 * t * (y2 - y0 + t * (2 * y0 - 5 * y1 + 4 * y2 - y3 + t * (3 * (y1 - y2) + y3 - y0)));
      this.pos += this.step;
      const advanced = Math.min(Math.floor(this.pos), this.len) - i;
      this.played += advanced;
    }
    if (this.playing) {
      this.sinceReport += out.length;
      if (Math.floor(this.pos) >= this.len) {
        this.pos = this.len;
        this.finishRun();
      } else if (this.sinceReport >= this.reportEvery) {
        this.report(true);
      }
    }
    return true;
  }

  finishRun() {
    if (!this.playing) return;
    this.playing = false;
    this.report(false);
  }

  report(playing) {
    this.sinceReport = 0;
    this.port.postMessage({ type: "played", playedMs: (this.played * 1000) / this.sourceRate, playing });
  }
}

registerProcessor("pcm-player", PlaybackProcessor);
