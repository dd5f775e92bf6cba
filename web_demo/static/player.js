// Real video: hls.js plays the session's /api/sessions/{id}/stream.m3u8 and the pin clock
// comes from the player itself. Live: the stream position is the program date-time of the
// frame on screen (hls.playingDate) mapped to the session's clock
//   position = playingDate − stream_clock_offset_ms − started_at
// so a pin (stream_ts_ms) shows when the video reaches the frame it was made on, however
// far behind the live edge this player runs. Videos: position = video.currentTime. Replays
// of a live show: the same mapping as live, on the show's VOD.
// Without a stream_url (or without MSE / hls.js) start() answers false and the page keeps
// its drawn stand-in.

const LIVE_SYNC_S = 3; // hls.js's usual distance: 3 segments of the demo's 1 s

export class HlsPlayer {
  /**
   * @param {{stage: HTMLElement, canvas: HTMLElement, session: string, holdMs?: number,
   *          serverNow?: () => number}} opts  holdMs: extra distance behind the live edge
   *          (the page's `delay_ms`, for testing)
   */
  constructor({ stage, canvas, session, holdMs = 0, serverNow = () => Date.now() }) {
    Object.assign(this, { stage, canvas, session, holdMs, serverNow });
    this.hls = null;
    this.video = null;
    this.info = null; // the session as GET /api/sessions/{id} answered
    this.loadedAs = null; // "live" | "vod": what the playlist was when loaded
    this.error = null;
    // videos and replays: called when the position crosses a timeline entry's edge, so the
    // page asks `position` right then rather than at its next poll; answers false when it
    // could not ask yet (then it is called again on the next check)
    this.onBoundary = null;
    this.edges = []; // sorted at_ms / until_ms of the timeline
    this.lastPos = null;
    this.pending = false;
    this.calling = false;
  }

  get active() {
    return this.hls !== null;
  }

  get src() {
    return `/api/sessions/${encodeURIComponent(this.session)}/stream.m3u8`;
  }

  async start() {
    const Hls = window.Hls;
    if (!Hls || !Hls.isSupported()) return false;
    try {
      const res = await fetch(`/api/sessions/${encodeURIComponent(this.session)}`);
      if (!res.ok) return false;
      this.info = await res.json();
    } catch {
      return false;
    }
    if (!this.info.stream_url) return false;
    try { // the stream answers (the demo's ffmpeg may be gone): else keep the stand-in
      if (!(await fetch(this.src)).ok) return false;
    } catch {
      return false;
    }
    const video = document.createElement("video");
    Object.assign(video, { muted: true, autoplay: true, playsInline: true, className: "video hls-video" });
    video.setAttribute("aria-label", "Live video stream");
    this.canvas.replaceWith(video);
    this.video = video;
    this.hls = new Hls({
      liveSyncDuration: LIVE_SYNC_S + this.holdMs / 1000,
      liveMaxLatencyDuration: LIVE_SYNC_S + this.holdMs / 1000 + 10,
      enableDateRangeMetadataCues: true,
      lowLatencyMode: false,
      maxLiveSyncPlaybackRate: 1.2, // drift back to the target distance after a stall
    });
    this.hls.on(Hls.Events.ERROR, (_e, data) => {
      if (data.fatal) this.error = `${data.type}: ${data.details}`;
    });
    this.loadedAs = this.info.kind === "video" || this.info.status === "ended" ? "vod" : "live";
    this.hls.loadSource(this.src);
    this.hls.attachMedia(video);
    video.play?.().catch(() => {});
    document.body.dataset.player = "hls";
    this.learnEdges(this.info);
    setInterval(() => this.checkEdges(), 40);
    window.__player = this; // browser tests read the player here
    return true;
  }

  /** A live show ended while we watched: load its VOD and play it from the start. */
  replay() {
    if (!this.active || this.loadedAs === "vod") return;
    this.loadedAs = "vod";
    this.info = { ...this.info, status: "ended" };
    this.refreshEdges();
    this.hls.stopLoad();
    this.hls.loadSource(this.src);
    this.hls.startLoad(0);
    this.video.currentTime = 0;
    this.video.play?.().catch(() => {});
  }

  learnEdges(info) {
    const edges = new Set();
    for (const e of info.timeline || []) {
      edges.add(e.at_ms);
      if (e.until_ms != null) edges.add(e.until_ms);
    }
    this.edges = [...edges].sort((a, b) => a - b);
  }

  async refreshEdges() {
    try {
      const res = await fetch(`/api/sessions/${encodeURIComponent(this.session)}`);
      if (!res.ok) return;
      const info = await res.json();
      this.info = { ...this.info, started_at: info.started_at ?? this.info.started_at };
      this.learnEdges(info);
    } catch { /* the regular poll still runs */ }
  }

  checkEdges() {
    if (this.loadedAs !== "vod" || !this.onBoundary) return;
    const pos = this.positionMs(this.info.started_at, true);
    if (pos == null) return;
    const last = this.lastPos;
    this.lastPos = pos;
    if (last != null && (pos < last || this.edges.some((e) => last < e && e <= pos))) {
      this.pending = true; // crossed an edge (or seeked back)
    }
    if (this.pending && !this.calling) {
      this.calling = true;
      Promise.resolve(this.onBoundary()).then((asked) => {
        if (asked !== false) this.pending = false;
      }, () => {}).finally(() => { this.calling = false; });
    }
  }

  /**
   * The stream position on the session's clock (ms), null until playing; `undefined` when
   * this player is not in charge (the stand-in is).
   */
  positionMs(startedAt, vod) {
    if (!this.active) return undefined;
    if (this.info.kind === "video") return vod ? this.video.currentTime * 1000 : null;
    const date = this.hls.playingDate;
    if (!date || startedAt == null) return null;
    const pos = date.getTime() - (this.info.stream_clock_offset_ms || 0) - startedAt;
    return vod ? Math.max(0, pos) : pos;
  }

  /** How far behind the live edge the frame on screen is (ms), from its program date-time. */
  distanceMs() {
    const date = this.active && this.hls.playingDate;
    return date ? this.serverNow() - date.getTime() - (this.info.stream_clock_offset_ms || 0) : null;
  }
}
