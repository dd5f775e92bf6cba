// Creator console: go live, pin/unpin, flash deals, live numbers with a chart, recent orders.
import { LivecartClient, wsUrlFor } from "./livecart.js";
import {
  $, h, money, minorDigits, parseMoney, moneyInput, mintToken, api, toast, errorText, fmtClock,
  fmtCountdown, compact, avatarFor,
} from "./common.js";
import { FakeStream } from "./stage.js";
import { mountCreatorFormats } from "./auction.js";
import { claims } from "./common.js";
import { mountChat, mountModeration } from "./chat.js";
import { installCreatorVouchers } from "./vouchers.js";

const params = new URLSearchParams(location.search);
const SESSION = params.get("session") || "sess_demo_live";
let token = params.get("token");

const state = {
  status: "loading",
  kind: "live",
  title: "",
  startedAt: null,
  products: new Map(),
  showcase: [],
  pinned: null,
  deals: new Map(),
  soldOut: new Set(),
  currency: "USD",
  numbers: {
    viewers: 0, peak: 0, likes: 0, clicks: null, adds: null, orders: 0, units: 0,
    gmv: null, commission: null, pins: 0,
  },
  estimatedGmv: 0,
  statsSeen: false,
  samples: [], // {t, viewers, likes, orders}
  orders: [],
};

let client;

// --- numbers -------------------------------------------------------------------------------

function setNumber(id, value, fmt = compact) {
  const el = $(id);
  const text = value === null || value === undefined ? "—" : fmt(value);
  if (el.textContent !== text) {
    el.textContent = text;
    el.animate?.([{ color: "#fff", transform: "scale(1.06)" }, { transform: "none" }], { duration: 350 });
  }
}

function renderNumbers() {
  const n = state.numbers;
  const m = (v) => money(v, state.currency);
  setNumber("#n-viewers", n.viewers);
  setNumber("#n-peak", n.peak);
  setNumber("#n-likes", n.likes);
  setNumber("#n-clicks", n.clicks);
  setNumber("#n-adds", n.adds);
  setNumber("#n-orders", n.orders);
  setNumber("#n-units", n.units);
  setNumber("#n-aov", n.orders && n.gmv !== null ? Math.round(n.gmv / n.orders) : null, m);
  if (n.gmv !== null) {
    setNumber("#n-gmv", n.gmv, m);
    $("#n-gmv-note").textContent = "attributed";
  } else if (state.estimatedGmv > 0) {
    setNumber("#n-gmv", state.estimatedGmv, m);
    $("#n-gmv-note").textContent = "est. from purchases";
  }
  setNumber("#n-commission", n.commission, m);
  $("#n-commission-note").textContent = n.commission === null ? "waiting for stats" : "pending payout";
}

function applyCounters(c) {
  if (!c) return;
  const n = state.numbers;
  if (typeof c.viewers === "number") n.viewers = c.viewers;
  n.peak = Math.max(n.peak, n.viewers);
  for (const k of ["likes", "orders", "units"]) if (typeof c[k] === "number") n[k] = c[k];
  renderNumbers();
}

/** The creator-only `stats` event (and the HTTP report): accept the report's shape. */
function applyStats(s) {
  if (!s || typeof s !== "object") return;
  const n = state.numbers;
  const v = s.viewers;
  if (typeof v === "number") n.viewers = v;
  else if (v && typeof v === "object") {
    if (typeof v.now === "number") n.viewers = v.now;
    if (typeof v.peak === "number") n.peak = v.peak;
  }
  if (typeof s.peak_viewers === "number") n.peak = s.peak_viewers;
  n.peak = Math.max(n.peak, n.viewers);
  const funnel = s.funnel && typeof s.funnel === "object" ? s.funnel : {};
  for (const k of ["likes", "clicks", "adds", "orders", "units", "gmv", "commission", "pins"]) {
    const val = typeof s[k] === "number" ? s[k] : funnel[k];
    if (typeof val === "number") n[k] = val;
  }
  if (typeof s.currency === "string") state.currency = s.currency;
  renderNumbers();
}

async function pollReport() {
  // Seeds the numbers from the HTTP report when it exists; stops once `stats` events flow.
  try {
    applyStats(await api(`/api/sessions/${encodeURIComponent(SESSION)}/report`, { token }));
  } catch (err) {
    if (err.status === 404 || err.status === 405) return; // no report endpoint (yet)
  }
  if (!state.statsSeen) setTimeout(pollReport, 5000);
}

// --- chart ---------------------------------------------------------------------------------

function sample() {
  const n = state.numbers;
  state.samples.push({ t: Date.now(), viewers: n.viewers, likes: n.likes, orders: n.orders });
  if (state.samples.length > 121) state.samples.shift();
  drawChart();
}

function drawChart() {
  const canvas = $("#chart");
  const rect = canvas.getBoundingClientRect();
  const dpr = Math.min(2, devicePixelRatio || 1);
  const W = Math.max(1, Math.round(rect.width * dpr));
  const H = Math.max(1, Math.round(rect.height * dpr));
  if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, W, H);
  const pad = 8 * dpr;
  const S = state.samples;
  // grid
  ctx.strokeStyle = "rgba(255,255,255,0.07)";
  ctx.lineWidth = 1;
  for (let i = 1; i < 4; i++) {
    const y = pad + ((H - 2 * pad) * i) / 4;
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(W, y); ctx.stroke();
  }
  if (S.length < 2) return;
  const n = 120;
  const x = (i) => W - pad - ((S.length - 1 - i) * (W - 2 * pad)) / n;
  const likeRate = S.map((s, i) => (i === 0 ? 0 : Math.max(0, s.likes - S[i - 1].likes) / Math.max(0.001, (s.t - S[i - 1].t) / 1000)));
  const maxLikes = Math.max(5, ...likeRate);
  // likes/s as bars
  ctx.fillStyle = "rgba(255, 210, 63, 0.55)";
  const bw = Math.max(1, ((W - 2 * pad) / n) * 0.6);
  likeRate.forEach((r, i) => {
    const bh = (r / maxLikes) * (H - 2 * pad) * 0.5;
    ctx.fillRect(x(i) - bw / 2, H - pad - bh, bw, bh);
  });
  // viewers as an area
  const maxV = Math.max(4, ...S.map((s) => s.viewers)) * 1.15;
  const y = (v) => H - pad - (v / maxV) * (H - 2 * pad);
  ctx.beginPath();
  S.forEach((s, i) => (i ? ctx.lineTo(x(i), y(s.viewers)) : ctx.moveTo(x(i), y(s.viewers))));
  ctx.strokeStyle = "#ff4d7d";
  ctx.lineWidth = 2.5 * dpr;
  ctx.lineJoin = "round";
  ctx.stroke();
  ctx.lineTo(x(S.length - 1), H - pad);
  ctx.lineTo(x(0), H - pad);
  ctx.closePath();
  const grad = ctx.createLinearGradient(0, 0, 0, H);
  grad.addColorStop(0, "rgba(255, 77, 125, 0.35)");
  grad.addColorStop(1, "rgba(255, 77, 125, 0)");
  ctx.fillStyle = grad;
  ctx.fill();
  // orders as dots on the viewers curve where the count went up (inside the plot)
  ctx.fillStyle = "#2bd576";
  const r = 4 * dpr;
  const dots = [];
  S.forEach((s, i) => {
    if (i && s.orders > S[i - 1].orders) {
      const cx = Math.min(W - r, Math.max(r, x(i)));
      const cy = Math.min(H - pad - r, Math.max(pad + r, y(s.viewers)));
      ctx.beginPath();
      ctx.arc(cx, cy, r, 0, Math.PI * 2);
      ctx.fill();
      dots.push({ x: cx / dpr, y: cy / dpr, r: r / dpr });
    }
  });
  // the label says what the Viewers tile says
  const label = `${compact(state.numbers.viewers)} viewer${state.numbers.viewers === 1 ? "" : "s"} now`;
  ctx.fillStyle = "rgba(255,255,255,0.5)";
  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  ctx.fillText(label, pad, pad + 10 * dpr);
  ctx.fillText("−2 min", pad, H - pad - 4 * dpr);
  state.chart = { label, dots, width: W / dpr, height: H / dpr }; // browser tests read it
}

// --- showcase, pins, deals -------------------------------------------------------------------

function openDeal(pid) {
  const d = state.deals.get(pid);
  return d && d.status !== "closed" && (!d.ends_at || d.ends_at > client.serverNow()) ? d : null;
}

/** Pins and deals need a live show; a shoppable video's products follow its timeline. */
function canPin() {
  return state.status === "live" && state.kind !== "video";
}

function renderProducts() {
  const pinnedId = state.pinned?.product?.id;
  const live = canPin();
  const why = state.kind === "video" ? "A shoppable video shows its products on its timeline"
    : "Go live to pin products";
  $("#products").replaceChildren(...state.showcase.map((pid) => {
    const p = state.products.get(pid);
    const isPinned = pid === pinnedId;
    return h("li", { class: `product-row${isPinned ? " is-pinned" : ""}`, dataset: { product: pid } },
      h("img", { src: p.image_url || "/static/img/placeholder.svg", alt: "", width: 52, height: 52 }),
      h("div", {},
        h("p", { class: "name" }, p.title),
        h("p", { class: "muted small" }, `${money(p.price, p.currency)} · ${compact(p.stock)} in stock · ${(p.commission_bps / 100).toFixed(p.commission_bps % 100 ? 1 : 0)}% commission`),
      ),
      h("div", { class: "row-actions" },
        h("button", {
          class: "btn btn-small pin-btn", type: "button", "aria-pressed": isPinned ? "true" : "false",
          "aria-label": `${isPinned ? "Unpin" : "Pin"} ${p.title}`, dataset: { action: "pin" },
          disabled: !live, title: live ? null : why,
          onclick: () => togglePin(pid),
        }, isPinned ? "Pinned ✓" : "Pin"),
        state.kind === "video" ? null : h("button", {
          class: "btn btn-small btn-ghost", type: "button", "aria-label": `Flash deal for ${p.title}`,
          disabled: !live, title: live ? null : why, dataset: { action: "deal" },
          onclick: () => prepareDeal(pid),
        }, "⚡"),
      ),
    );
  }));
  const sel = $("#deal-product");
  const current = sel.value;
  sel.replaceChildren(...state.showcase.map((pid) => h("option", { value: pid }, state.products.get(pid).title)));
  if (current && state.products.has(current)) sel.value = current;
  for (const el of $("#deal-form").elements) el.disabled = !live;
  $("#deal-locked").hidden = live;
  $("#showcase-note").textContent = live ? "one click to pin" : why;
  updateDealHint();
}

function renderPinned() {
  const pin = state.pinned;
  const box = $("#preview-pin");
  if (!pin) {
    box.hidden = true;
  } else {
    const p = state.products.get(pin.product.id) || pin.product;
    const deal = openDeal(p.id);
    box.hidden = false;
    box.classList.toggle("has-deal", !!deal);
    $("#preview-pin-img").src = p.image_url || "/static/img/placeholder.svg";
    $("#preview-pin-title").textContent = p.title;
    $("#preview-pin-price").textContent = deal ? `⚡ ${money(deal.price, p.currency)} (was ${money(p.price, p.currency)})` : money(p.price, p.currency);
  }
  renderDealStatus();
}

function renderDealStatus() {
  const box = $("#deal-status");
  const pin = state.pinned;
  const d = pin && state.deals.get(pin.product.id);
  if (!d) { box.hidden = true; return; }
  const p = state.products.get(pin.product.id) || pin.product;
  const left = (d.ends_at || 0) - client.serverNow();
  const soldOut = d.stock_left <= 0 || state.soldOut.has(p.id);
  box.hidden = false;
  box.dataset.soldOut = soldOut ? "true" : "false";
  if (d.status === "closed" || left <= 0) {
    box.replaceChildren(h("strong", {}, "Deal closed"), ` · ${p.title} is back to ${money(p.price, p.currency)}`);
  } else if (soldOut) {
    box.replaceChildren(h("strong", {}, "Sold out!"), ` · ${p.title} deal sold every unit`);
  } else {
    box.replaceChildren(h("strong", {}, `${money(d.price, p.currency)}`), ` · ${compact(d.stock_left)} left · ends in ${fmtCountdown(left)}`);
  }
}

async function togglePin(pid) {
  const isPinned = state.pinned?.product?.id === pid;
  try {
    if (isPinned) {
      await client.request("unpin");
      state.pinned = null;
    } else {
      const res = await client.request("pin", { product: pid });
      state.pinned = res.pinned || state.pinned;
    }
    renderProducts();
    renderPinned();
  } catch (err) {
    toast(`${isPinned ? "Unpin" : "Pin"} failed: ${errorText(err)}`, "error", 6000);
  }
}

function prepareDeal(pid) {
  $("#deal-product").value = pid;
  updateDealHint(true);
  $("#deal-price").focus();
}

function updateDealHint(setDefault = false) {
  const p = state.products.get($("#deal-product").value);
  if (!p) return;
  $("#deal-currency").textContent = p.currency;
  $("#deal-price-hint").textContent = `list ${money(p.price, p.currency)} · ${compact(p.stock)} in stock`;
  if (setDefault || !$("#deal-price").value) {
    // Suggest ~30% off, ending in .99 (e.g. $89.00 → $61.99).
    const unit = 10 ** minorDigits(p.currency);
    const suggested = Math.floor((p.price * 0.7) / unit) * unit - 1;
    $("#deal-price").value = moneyInput(suggested > 0 ? suggested : Math.max(1, p.price - 1), p.currency);
  }
}

async function submitDeal(e) {
  e.preventDefault();
  const err = $("#deal-error");
  err.hidden = true;
  const pid = $("#deal-product").value;
  const p = state.products.get(pid);
  const price = parseMoney($("#deal-price").value, p.currency);
  const stock = Number($("#deal-stock").value);
  const limit = Number($("#deal-limit").value);
  const duration = Number($("#deal-duration").value);
  const problems = [];
  if (price === null || price <= 0) problems.push("Enter a deal price.");
  else if (price >= p.price) problems.push(`The deal price must be below the list price (${money(p.price, p.currency)}).`);
  if (!Number.isInteger(stock) || stock < 1) problems.push("Units must be a whole number ≥ 1.");
  if (!Number.isInteger(limit) || limit < 1) problems.push("Per-buyer limit must be a whole number ≥ 1.");
  if (!Number.isFinite(duration) || duration < 5) problems.push("Duration must be at least 5 seconds.");
  if (problems.length) {
    err.textContent = problems.join(" ");
    err.hidden = false;
    return;
  }
  const btn = $("#deal-submit");
  btn.disabled = true;
  try {
    const deal = { price, stock, per_buyer_limit: limit, ends_at: Math.round(client.serverNow() + duration * 1000) };
    const res = await client.request("pin", { product: pid, deal });
    if (res?.pinned) {
      state.pinned = res.pinned;
      if (res.pinned.deal) state.deals.set(pid, res.pinned.deal);
      state.soldOut.delete(pid);
    }
    renderProducts();
    renderPinned();
    toast(`Flash deal live: ${p.title} at ${money(price, p.currency)}`, "ok");
  } catch (e2) {
    err.textContent = `The server refused the deal: ${errorText(e2)}`;
    err.hidden = false;
  } finally {
    btn.disabled = !canPin();
  }
}

// --- orders ----------------------------------------------------------------------------------

function onPurchase(d, ev) {
  const p = state.products.get(d.product) || { title: d.product, price: 0, currency: state.currency };
  const deal = openDeal(d.product);
  const unit = deal ? deal.price : p.price;
  const amount = unit * (d.qty || 1);
  state.estimatedGmv += amount;
  const names = (d.names || []).filter(Boolean);
  const who = names.length ? names.slice(0, 2).join(", ") + (d.count > names.slice(0, 2).length ? ` +${d.count - Math.min(2, names.length)}` : "") : "Someone";
  const list = $("#orders");
  $("#orders-empty")?.remove();
  const row = h("li", { class: "order-row", dataset: { product: d.product } },
    avatarFor(names[0] || "?", "avatar"),
    h("div", {},
      h("div", {}, h("span", { class: "who" }, who), ` bought ${d.qty || 1} × ${p.title}`),
      h("div", { class: "when" }, new Date(ev?.ts || Date.now()).toLocaleTimeString()),
    ),
    h("span", { class: "amt" }, money(amount, p.currency)),
  );
  list.prepend(row);
  while (list.children.length > 30) list.lastElementChild.remove();
  renderNumbers();
}

// --- session ---------------------------------------------------------------------------------

function setStatus(status) {
  state.status = status;
  document.body.dataset.status = status;
  for (const sel of ["#status-badge", "#preview-badge"]) {
    const b = $(sel);
    b.dataset.status = status;
    b.textContent = { live: "LIVE", scheduled: "NOT LIVE", ended: "ENDED" }[status] || status.toUpperCase();
  }
  if (state.kind === "video") {
    for (const sel of ["#status-badge", "#preview-badge"]) {
      $(sel).dataset.status = "vod";
      $(sel).textContent = status === "live" ? "VIDEO" : status === "ended" ? "ENDED" : "NOT PUBLISHED";
    }
  }
  $("#start-btn").disabled = status !== "scheduled";
  $("#start-btn").hidden = status !== "scheduled" && status !== "loading";
  $("#start-btn").textContent = state.kind === "video" ? "Publish video" : "● Go live";
  $("#end-btn").disabled = status !== "live";
  $("#end-btn").hidden = state.kind === "video";
  $("#end-btn").textContent = status === "ended" ? "Show ended" : "End show";
  if (state.showcase.length) renderProducts();
}

async function learnStartedAt() {
  try {
    const s = await api(`/api/sessions/${encodeURIComponent(SESSION)}`);
    if (s.started_at) state.startedAt = s.started_at;
  } catch { /* keep the estimate */ }
}

function onJoined({ snapshot }) {
  state.kind = snapshot.kind;
  document.body.dataset.kind = snapshot.kind;
  if (snapshot.kind === "video") {
    // a video has no live edge: no HLS-delay viewers, no flash deals, nothing to end
    $("#deal-card").hidden = true;
    $("#watch-link-0").hidden = true;
    $("#watch-link").textContent = "Open the video as a viewer ↗";
    $("#preview-note").textContent = "shoppable video";
  }
  state.title = snapshot.title;
  $("#show-title").textContent = snapshot.title;
  document.title = `${snapshot.title} · Creator console`;
  for (const p of snapshot.showcase || []) state.products.set(p.id, p);
  state.showcase = (snapshot.showcase || []).map((p) => p.id);
  if (snapshot.showcase?.[0]?.currency) state.currency = snapshot.showcase[0].currency;
  state.pinned = snapshot.pinned;
  if (snapshot.pinned?.deal) state.deals.set(snapshot.pinned.product.id, snapshot.pinned.deal);
  setStatus(snapshot.status);
  applyCounters(snapshot.counters);
  renderProducts();
  renderPinned();
  if (snapshot.status !== "scheduled") learnStartedAt();
}

async function setLive(op) {
  const btn = op === "start" ? $("#start-btn") : $("#end-btn");
  if (op === "end" && !confirm("End the show for everyone?")) return;
  btn.disabled = true;
  try {
    const s = await client.request(op);
    if (s.started_at) state.startedAt = s.started_at;
    setStatus(s.status);
    if (op === "end") { state.pinned = null; renderProducts(); renderPinned(); }
  } catch (err) {
    toast(`${op === "start" ? "Going live" : "Ending"} failed: ${errorText(err)}`, "error", 6000);
    setStatus(state.status);
  }
}

function wire() {
  client.on("joined", onJoined);
  client.on("session", (d, ev) => {
    if (d.status === "live" && !state.startedAt) state.startedAt = ev.ts;
    setStatus(d.status);
  });
  client.on("pinned", (pin) => {
    state.pinned = pin;
    if (pin.deal) state.deals.set(pin.product.id, pin.deal);
    renderProducts();
    renderPinned();
    renderNumbers();
  });
  client.on("unpinned", () => { state.pinned = null; renderProducts(); renderPinned(); });
  client.on("deal", (d) => {
    state.deals.set(d.product, { ...(state.deals.get(d.product) || {}), ...d });
    renderPinned();
  });
  client.on("sold_out", (d) => {
    state.soldOut.add(d.product);
    const deal = state.deals.get(d.product);
    if (deal) deal.stock_left = 0;
    renderPinned();
    toast(`Sold out: ${state.products.get(d.product)?.title || d.product}`, "warn");
  });
  client.on("product", (d) => {
    const p = state.products.get(d.id);
    if (p) Object.assign(p, { price: d.price, stock: d.stock });
    renderProducts();
  });
  client.on("purchase", onPurchase);
  client.on("counters", applyCounters);
  client.on("stats", (s) => { state.statsSeen = true; applyStats(s); });
  client.on("state", ({ state: s }) => {
    document.body.dataset.conn = s;
    $("#conn-label").textContent = { open: "connected", reconnecting: "reconnecting…", closed: "disconnected" }[s] || s;
  });
  $("#start-btn").addEventListener("click", () => setLive("start"));
  $("#end-btn").addEventListener("click", () => setLive("end"));
  $("#deal-form").addEventListener("submit", submitDeal);
  $("#deal-product").addEventListener("change", () => updateDealHint(true));
  const watch = `/demo/watch?session=${encodeURIComponent(SESSION)}`;
  $("#watch-link").href = watch;
  $("#watch-link-0").href = `${watch}&delay_ms=0`;
}

function creatorPosition() {
  if (state.status !== "live" || !state.startedAt) return null;
  return client.serverNow() - state.startedAt;
}

async function main() {
  if (!token) {
    // Demo convenience: mint the creator's token when the link did not carry one.
    const s = await api(`/api/sessions/${encodeURIComponent(SESSION)}`);
    token = await mintToken(s.creator, "creator", s.creator);
  }
  client = new LivecartClient({ url: wsUrlFor("/ws"), token, pingIntervalMs: 5000, pingTimeoutMs: 3000 });
  window.__livecart = { client, state };
  wire();
  mountCreatorFormats(client, state); // auctions and giveaways (auction.js)
  window.__livecart.chat = mountChat({ client, session: SESSION, me: claims(token), root: $("#chat-panel"), moderator: true, toggle: false });
  mountModeration({ client, session: SESSION, token, root: $("#moderation") });
  installCreatorVouchers({ client, session: SESSION, currency: state.currency });
  new FakeStream($("#preview"), creatorPosition, () => state.status).start();
  setInterval(() => {
    const pos = creatorPosition();
    $("#preview-clock").textContent = pos === null ? "--:--" : fmtClock(pos);
    if (state.pinned && state.deals.has(state.pinned.product.id)) renderDealStatus();
  }, 250);
  setInterval(sample, 1000);
  addEventListener("resize", drawChart);
  await client.connect();
  await client.join(SESSION).catch((err) => toast(`Couldn’t open the session: ${errorText(err)}`, "error", 10000));
  pollReport();
}

main().catch((err) => {
  console.error(err);
  toast(`Couldn’t start: ${errorText(err)}`, "error", 10000);
});
