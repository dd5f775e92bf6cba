// A looping canvas animation standing in for the live video stream.
// The picture is a function of the *stream position*, so a delayed player shows
// the same frame later than a player at the live edge — like real HLS.

const TAU = Math.PI * 2;

export class FakeStream {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {() => (number|null)} position  stream position in ms (null = not live yet)
   * @param {() => string} status           "scheduled" | "live" | "ended"
   */
  constructor(canvas, position, status) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.position = position;
    this.status = status;
    this.running = false;
    this.reduced = matchMedia?.("(prefers-reduced-motion: reduce)").matches;
    // Video-like frame rate (and far less CPU than 60 fps); a trickle with reduced motion.
    this.frameMs = this.reduced ? 200 : 1000 / 24;
    this.lastFrame = 0;
    this._frame = this._frame.bind(this);
    new ResizeObserver(() => this._resize()).observe(canvas);
    this._resize();
  }

  start() {
    if (this.running) return;
    this.running = true;
    requestAnimationFrame(this._frame);
  }

  _resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = Math.min(2, devicePixelRatio || 1);
    this.canvas.width = Math.max(1, Math.round(r.width * dpr));
    this.canvas.height = Math.max(1, Math.round(r.height * dpr));
  }

  _frame(now) {
    if (!this.running) return;
    if (!(now - this.lastFrame < this.frameMs)) {
      this.lastFrame = now;
      this.draw();
    }
    requestAnimationFrame(this._frame);
  }

  draw() {
    const { ctx, canvas } = this;
    const W = canvas.width;
    const H = canvas.height;
    const pos = this.position();
    const status = this.status();
    const t = (pos ?? performance.now() * 0.2) / 1000;

    // Studio backdrop.
    const bg = ctx.createLinearGradient(0, 0, W, H);
    bg.addColorStop(0, "#1b1030");
    bg.addColorStop(0.55, "#0d1a2e");
    bg.addColorStop(1, "#06070c");
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, W, H);

    // Bokeh lights drifting with the stream clock.
    for (let i = 0; i < 14; i++) {
      const px = ((Math.sin(i * 12.9898) * 43758.5453) % 1 + 1) % 1;
      const py = ((Math.sin(i * 78.233) * 12345.6789) % 1 + 1) % 1;
      const x = (px * W + Math.sin(t * 0.3 + i) * W * 0.05 + W) % W;
      const y = (py * H * 0.6 + Math.cos(t * 0.25 + i * 2) * H * 0.03);
      const r = (0.03 + 0.04 * ((i * 7) % 5) / 5) * Math.min(W, H);
      const hue = (300 + i * 23 + t * 8) % 360;
      const g = ctx.createRadialGradient(x, y, 0, x, y, r);
      g.addColorStop(0, `hsla(${hue}, 90%, 65%, 0.35)`);
      g.addColorStop(1, `hsla(${hue}, 90%, 65%, 0)`);
      ctx.fillStyle = g;
      ctx.beginPath();
      ctx.arc(x, y, r, 0, TAU);
      ctx.fill();
    }

    // Ring light behind the host.
    const cx = W * 0.5;
    const cy = H * 0.42;
    const ring = Math.min(W, H) * 0.34;
    ctx.lineWidth = ring * 0.08;
    ctx.strokeStyle = `rgba(255, 236, 210, ${0.35 + 0.1 * Math.sin(t * 2)})`;
    ctx.beginPath();
    ctx.arc(cx, cy, ring, 0, TAU);
    ctx.stroke();

    // The host: a soft silhouette that sways and "talks".
    const sway = this.reduced ? 0 : Math.sin(t * 1.3) * W * 0.015;
    const bob = this.reduced ? 0 : Math.sin(t * 2.6) * H * 0.004;
    const headR = Math.min(W, H) * 0.11;
    const hx = cx + sway;
    const hy = cy - headR * 0.2 + bob;
    const body = ctx.createLinearGradient(0, hy, 0, H);
    body.addColorStop(0, "#ff5c8a");
    body.addColorStop(1, "#7b2cbf");
    ctx.fillStyle = body;
    ctx.beginPath();
    ctx.ellipse(hx, hy + headR * 3.4, headR * 2.2, headR * 2.1, 0, Math.PI, TAU);
    ctx.lineTo(hx + headR * 2.2, H);
    ctx.lineTo(hx - headR * 2.2, H);
    ctx.closePath();
    ctx.fill();
    ctx.fillStyle = "#f3c6a5";
    ctx.beginPath();
    ctx.arc(hx, hy, headR, 0, TAU);
    ctx.fill();
    ctx.fillStyle = "#2b1a12"; // hair
    ctx.beginPath();
    ctx.arc(hx, hy - headR * 0.15, headR * 1.05, Math.PI * 1.05, TAU * 0.99);
    ctx.fill();
    ctx.fillStyle = "#3a2230"; // eyes
    const blink = Math.sin(t * 1.7) > 0.97 ? 0.15 : 1;
    for (const dx of [-0.38, 0.38]) {
      ctx.beginPath();
      ctx.ellipse(hx + dx * headR, hy + headR * 0.05, headR * 0.09, headR * 0.11 * blink, 0, 0, TAU);
      ctx.fill();
    }
    const talk = status === "live" && !this.reduced ? Math.abs(Math.sin(t * 9)) * 0.12 + 0.04 : 0.04;
    ctx.fillStyle = "#b8405e";
    ctx.beginPath();
    ctx.ellipse(hx, hy + headR * 0.48, headR * 0.24, headR * talk, 0, 0, TAU);
    ctx.fill();

    // A "product" held up, spinning slowly.
    const px = hx + headR * 2.1;
    const py = hy + headR * 2.4;
    const s = headR * 0.75;
    ctx.save();
    ctx.translate(px, py);
    ctx.rotate(Math.sin(t * 0.8) * 0.25);
    ctx.fillStyle = "rgba(255,255,255,0.92)";
    roundRect(ctx, -s / 2, -s / 2, s, s, s * 0.18);
    ctx.fill();
    ctx.fillStyle = `hsl(${(t * 30) % 360}, 80%, 60%)`;
    ctx.beginPath();
    ctx.arc(0, 0, s * 0.26, 0, TAU);
    ctx.fill();
    ctx.restore();

    // Dim when not live.
    if (status !== "live") {
      ctx.fillStyle = "rgba(5, 5, 10, 0.55)";
      ctx.fillRect(0, 0, W, H);
    }
    // Scanline grain for a "video" feel.
    ctx.fillStyle = "rgba(255,255,255,0.018)";
    for (let y = (Math.floor(t * 60) % 4); y < H; y += 4) ctx.fillRect(0, y, W, 1);
  }
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}
