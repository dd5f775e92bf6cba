// Viewer page: a simulated HLS player in sync with pins, cart, buy now, likes, social proof.
import { LivecartClient, wsUrlFor } from "./livecart.js";
import {
  $, h, money, mintToken, claims, api, toast, errorText, idempotencyKey, fmtClock,
  fmtCountdown, compact, randomName, randomId, avatarFor,
} from "./common.js";
import { FakeStream } from "./stage.js";
import { mountViewerFormats } from "./auction.js";
import { mountChat } from "./chat.js";
import { installViewerPromos } from "./vouchers.js";
import { HlsPlayer } from "./player.js";

const params = new URLSearchParams(location.search);
const SESSION = params.get("session") || "sess_demo_live";
const DELAY_MS = Math.max(0, Number(params.get("delay_ms") ?? 3000) || 0);
const LIKE_BATCH_MS = 300;

const state = {
  me: null, // {sub, name}
  status: "loading",
  kind: "live",
  title: "",
  creator: "",
  startedAt: null, // server epoch ms
  products: new Map(), // id -> product
  showcase: [],
  timeline: [], // [{at, pin|null}] pending changes, at = stream position (ms)
  shown: null, // the pin on screen (or null)
  shownKey: null,
  deals: new Map(), // product id -> {price, stock_left, per_buyer_limit, ends_at, status}
  soldOut: new Set(), // product ids
  dealBought: new Map(), // deal key (product@pinned_at) -> units I bought in that deal
  cart: { lines: [], total: 0 },
  cartError: null,
  counters: { viewers: 0, likes: 0, orders: 0, units: 0 },
  pendingLikes: 0,
  sentLikes: 0,
  currency: "USD",
  vod: false, // video session or replay: a local playback clock, pins from `position`
  vodStart: null,
  seenLive: false,
  shownLog: [], // [{product, at}] what the card showed and when (browser tests read it)
  joins: [], // [{at, recovered, resumed, seq}]
};

let client;
let promo; // vouchers and waitlists (vouchers.js)
let player = null; // HlsPlayer when the session has a real stream (player.js)
const stageEl = $("#stage");
const canvas = $("#video");

// --- identity -------------------------------------------------------------------------

async function identity() {
  const given = params.get("token");
  if (given) {
    const c = claims(given);
    return { token: given, sub: c.sub, name: c.name || c.sub, minted: false };
  }
  // One viewer per tab: kept in sessionStorage so a reload keeps the same cart.
  let me = null;
  try { me = JSON.parse(sessionStorage.getItem("livecart.viewer") || "null"); } catch { /* */ }
  if (!me) {
    me = { sub: randomId("viewer_"), name: randomName() };
    sessionStorage.setItem("livecart.viewer", JSON.stringify(me));
  }
  const token = await mintToken(me.sub, "viewer", me.name);
  return { token, ...me, minted: true };
}

function scheduleTokenRefresh(me, token) {
  const exp = claims(token).exp;
  if (!exp || !me.minted) return;
  const wait = Math.max(5000, exp * 1000 - Date.now() - 60_000);
  setTimeout(async () => {
    try {
      const fresh = await mintToken(me.sub, "viewer", me.name);
      await client.auth(fresh);
      scheduleTokenRefresh(me, fresh);
    } catch (err) {
      console.warn("token refresh failed", err);
    }
  }, Math.min(wait, 2 ** 31 - 1));
}

// --- player clock ---------------------------------------------------------------------

/** Stream position the player shows: server time − started_at − HLS delay. */
function playerPosition() {
  const real = player?.positionMs(state.startedAt, state.vod);
  if (real !== undefined) return real;
  if (state.vod) return state.vodStart == null ? null : performance.now() - state.vodStart;
  if (state.startedAt == null || state.status === "scheduled" || state.status === "loading") return null;
  return client.serverNow() - state.startedAt - DELAY_MS;
}

function pinKey(pin) {
  return pin ? `${pin.product?.id}@${pin.pinned_at}` : null;
}

function schedule(at, pin) {
  state.timeline.push({ at, pin });
  state.timeline.sort((a, b) => a.at - b.at);
  tick();
}

/** Show whatever the player clock has reached. Runs every animation frame-ish. */
function tick() {
  const pos = playerPosition();
  if (pos !== null && !state.vod) {
    let due = -1;
    for (let i = 0; i < state.timeline.length; i++) if (state.timeline[i].at <= pos) due = i;
    if (due >= 0) {
      const entry = state.timeline[due];
      state.timeline.splice(0, due + 1);
      if (pinKey(entry.pin) !== state.shownKey) showPin(entry.pin);
    }
  }
  renderClock(pos);
  renderDealTimer();
}

function renderClock(pos) {
  $("#clock-pos").textContent = pos === null ? "--:--" : fmtClock(Math.max(0, pos));
  const behind = state.vod ? null : player?.distanceMs();
  const note = $("#delay-note"); // gone once a replay rewrote the panel's foot
  if (note && behind != null) note.textContent = `${(behind / 1000).toFixed(1)} s`;
  $("#clock-delay").textContent = state.vod
    ? (state.kind === "video" ? "video" : "replay")
    : behind != null ? `${(behind / 1000).toFixed(1)} s behind live`
    : DELAY_MS ? `${(DELAY_MS / 1000).toFixed(1)} s behind live` : "live edge";
}

// --- video sessions and replays: the pin comes from `position {ms}` -----------------------

function enterVod() {
  if (state.vod) return;
  state.vod = true;
  state.vodStart = performance.now();
  player?.replay();
  state.timeline = [];
  if (state.shown) showPin(null);
  $(".panel-foot").textContent = state.kind === "video"
    ? "Shoppable video: products appear at their moments in the video."
    : "Replay: each product appears at the moment the host pinned it during the live.";
  setStatus(state.status);
  pollPosition();
}

let positionBusy = false;
async function pollPosition() {
  const pos = playerPosition();
  if (!state.vod || positionBusy || client.state !== "open" || pos === null) return false;
  positionBusy = true;
  try {
    const { pinned } = await client.request("position", { ms: Math.floor(pos) });
    if (state.vod && pinKey(pinned) !== state.shownKey) showPin(pinned);
  } catch { /* next poll */ } finally {
    positionBusy = false;
  }
}

// --- pinned card ------------------------------------------------------------------------

function productOf(idOrProduct) {
  if (idOrProduct && typeof idOrProduct === "object") return state.products.get(idOrProduct.id) || idOrProduct;
  return state.products.get(idOrProduct) || { id: idOrProduct, title: idOrProduct, price: null, currency: state.currency };
}

function openDeal(pid, now = client.serverNow()) {
  const d = state.deals.get(pid);
  return d && d.status !== "closed" && (!d.ends_at || d.ends_at > now) ? d : null;
}

function showPin(pin) {
  state.shown = pin;
  state.shownKey = pinKey(pin);
  const card = $("#pin-card");
  if (!pin) {
    card.classList.remove("in");
    card.hidden = true;
    card.dataset.product = "";
    state.shownLog.push({ product: null, at: Date.now() });
    return;
  }
  const shownAt = Date.now();
  card.dataset.product = pin.product.id;
  card.dataset.shownAt = String(shownAt);
  card.dataset.streamTs = String(pin.stream_ts_ms);
  state.shownLog.push({ product: pin.product.id, at: shownAt, stream_ts_ms: pin.stream_ts_ms });
  card.hidden = false;
  card.classList.remove("in");
  void card.offsetWidth; // restart the entrance animation
  card.classList.add("in");
  renderCard();
}

function renderCard() {
  const pin = state.shown;
  if (!pin) return;
  const p = productOf(pin.product);
  const deal = openDeal(p.id);
  const currency = p.currency || state.currency;
  const card = $("#pin-card");
  const img = $("#pin-img");
  if (img.getAttribute("src") !== p.image_url) img.src = p.image_url || "/static/img/placeholder.svg";
  img.alt = p.title || "";
  $("#pin-title").textContent = p.title;
  const soldOut = (deal ? deal.stock_left <= 0 || state.soldOut.has(p.id) : p.stock === 0)
    && !promo?.holding(p.id); // a unit a restock holds for me is mine to buy
  if (deal) {
    $("#pin-price").textContent = money(deal.price, currency);
    $("#pin-list-price").textContent = money(p.price, currency);
    $("#pin-list-price").hidden = false;
    $("#pin-deal-row").hidden = false;
    $("#pin-left").textContent = soldOut ? "all gone" : `${compact(deal.stock_left)} left`;
    card.classList.add("has-deal");
  } else {
    $("#pin-price").textContent = money(p.price, currency);
    $("#pin-list-price").hidden = true;
    $("#pin-deal-row").hidden = true;
    card.classList.remove("has-deal");
  }
  card.dataset.soldOut = soldOut ? "true" : "false";
  $("#pin-soldout").hidden = !soldOut;
  // Deals belong to Buy now: a cart pays list prices (docs/protocol.md), so while a deal
  // is open here the card offers only Buy now and says why.
  const limit = deal && deal.per_buyer_limit;
  const atLimit = !!deal && !soldOut && limit > 0 && dealBought(pin) >= limit;
  const buy = $("#buy-now");
  buy.disabled = soldOut || atLimit;
  buy.textContent = soldOut ? "Sold out" : atLimit ? "Limit reached"
    : deal ? `Buy now · ${money(deal.price, currency)}` : "Buy now";
  $("#add-cart").hidden = !!deal;
  $("#add-cart").disabled = soldOut && !deal;
  const note = $("#pin-deal-note");
  note.hidden = !deal;
  note.textContent = !deal ? ""
    : atLimit ? `You bought ${limit} — the most this deal allows per buyer.`
    : `Deal price with Buy now only${limit ? ` · max ${limit} per buyer` : ""} · the cart pays ${money(p.price, currency)}`;
  card.dataset.atLimit = atLimit ? "true" : "false";
  promo?.renderCard(p.id, soldOut && !deal);
  renderShowcase();
  renderDealTimer();
}

function dealKey(pin) {
  return `${pin.product.id}@${pin.pinned_at}`;
}

function dealBought(pin) {
  return state.dealBought.get(dealKey(pin)) || 0;
}

function renderDealTimer() {
  const pin = state.shown;
  if (!pin) return;
  const d = state.deals.get(pin.product.id);
  if (!d || d.status === "closed") return;
  const left = (d.ends_at || 0) - client.serverNow();
  $("#pin-countdown").textContent = fmtCountdown(left);
  if (left <= 0 && $("#pin-card").classList.contains("has-deal")) renderCard();
}

// --- purchases, cart, orders ------------------------------------------------------------

async function withRetry(fn, tries = 3) {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      const retriable = ["disconnected", "unavailable", "timeout"].includes(err.code);
      if (!retriable || i >= tries - 1) throw err;
      await new Promise((r) => setTimeout(r, 400 * (i + 1)));
    }
  }
}

async function buyNow(pid, { price } = {}) {
  const p = productOf(pid);
  const deal = openDeal(pid);
  const seen = price ?? (deal ? deal.price : p.price);
  const key = idempotencyKey(); // same key across retries: never buys twice
  const btn = $("#buy-now");
  btn.disabled = true;
  btn.classList.add("busy");
  try {
    const order = await withRetry(() => client.request("buy_now", { product: pid, qty: 1, idempotency_key: key, price: seen }));
    promo?.ordered(order);
    if (deal && state.shown?.product.id === pid) {
      state.dealBought.set(dealKey(state.shown), dealBought(state.shown) + 1);
    }
    showOrder(order);
  } catch (err) {
    if (err.code === "limit_exceeded" && deal && state.shown?.product.id === pid) {
      const limit = typeof err.details?.limit === "number" ? err.details.limit : deal.per_buyer_limit;
      state.dealBought.set(dealKey(state.shown), Math.max(dealBought(state.shown), limit));
      toast(errorText(err), "warn", 5000);
    } else if (err.code === "conflict" && typeof err.details?.price === "number") {
      toast(`Price changed to ${money(err.details.price, p.currency)} — tap Buy now again to confirm.`, "warn", 6000);
    } else if (err.code === "sold_out") {
      state.soldOut.add(pid);
      toast("Sold out — you just missed it.", "warn");
    } else {
      toast(`Couldn’t buy: ${errorText(err)}`, "error", 6000);
    }
  } finally {
    btn.classList.remove("busy");
    renderCard();
  }
}

async function addToCart(pid) {
  const p = productOf(pid);
  try {
    const cart = await withRetry(() => client.request("cart_add", { product: pid, qty: 1 }));
    setCart(cart);
    toast(`Added ${p.title} to your cart`, "ok", 2500);
    bumpCart();
  } catch (err) {
    toast(`Couldn’t add to cart: ${errorText(err)}`, "error", 6000);
  }
}

function bumpCart() {
  const b = $("#cart-btn");
  b.classList.remove("bump");
  void b.offsetWidth;
  b.classList.add("bump");
}

function setCart(cart) {
  if (!cart || !Array.isArray(cart.lines)) return;
  state.cart = cart;
  state.cartError = null;
  renderCart();
}

function renderCart() {
  const { lines, total } = state.cart;
  const count = lines.reduce((n, l) => n + (l.qty || 0), 0);
  const badge = $("#cart-count");
  badge.textContent = String(count);
  badge.hidden = count === 0;
  $("#cart-btn").setAttribute("aria-label", `Open cart, ${count} item${count === 1 ? "" : "s"}`);
  const list = $("#cart-lines");
  list.replaceChildren(...lines.map((line) => {
    const p = productOf(line.product);
    const pid = p.id;
    const currency = p.currency || state.currency;
    const qtyId = `qty-${pid}`;
    return h("li", { class: "cart-line", dataset: { product: pid } },
      h("img", { src: p.image_url || "/static/img/placeholder.svg", alt: "", width: 56, height: 56 }),
      h("div", { class: "cart-line-body" },
        h("p", { class: "cart-line-title" }, p.title),
        h("p", { class: "muted small" }, `${money(line.unit_price, currency)} each`),
        h("div", { class: "qty", role: "group", "aria-label": `Quantity of ${p.title}` },
          h("button", { class: "qty-btn", type: "button", "aria-label": "Decrease quantity",
            onclick: () => setQty(pid, line.qty - 1) }, "−"),
          h("label", { class: "sr-only", for: qtyId }, `Quantity of ${p.title}`),
          h("input", { id: qtyId, class: "qty-input", type: "number", min: 1, max: 99, value: line.qty,
            inputmode: "numeric",
            onchange: (e) => setQty(pid, Number(e.target.value)) }),
          h("button", { class: "qty-btn", type: "button", "aria-label": "Increase quantity",
            onclick: () => setQty(pid, line.qty + 1) }, "+"),
          h("button", { class: "link-btn", type: "button", onclick: () => removeLine(pid) }, "Remove"),
        ),
      ),
      h("strong", { class: "cart-line-amount" }, money(line.unit_price * line.qty, currency)),
    );
  }));
  $("#cart-empty").hidden = lines.length > 0;
  $("#cart-total").textContent = money(total, state.currency);
  $("#checkout-btn").disabled = lines.length === 0;
  const err = $("#cart-error");
  err.hidden = !state.cartError;
  err.textContent = state.cartError || "";
  promo?.renderCart();
}

async function setQty(pid, qty) {
  try {
    if (!Number.isInteger(qty) || qty < 1) return removeLine(pid);
    setCart(await client.request("cart_set", { product: pid, qty }));
  } catch (err) {
    state.cartError = errorText(err);
    renderCart();
  }
}

async function removeLine(pid) {
  try {
    setCart(await client.request("cart_remove", { product: pid }));
  } catch (err) {
    state.cartError = errorText(err);
    renderCart();
  }
}

async function checkout() {
  const btn = $("#checkout-btn");
  btn.disabled = true;
  btn.textContent = "Placing order…";
  const key = idempotencyKey();
  try {
    const order = await withRetry(() => client.request("checkout", {
      idempotency_key: key, ...(promo ? promo.checkoutArgs(state.cart.total) : { total: state.cart.total }) }));
    promo?.ordered(order);
    $("#cart-dialog").close();
    showOrder(order);
  } catch (err) {
    state.cartError = err.code === "conflict"
      ? `Prices changed (${errorText(err)}). Check the new total and try again.`
      : `Checkout failed: ${errorText(err)}`;
    renderCart();
    if (err.code === "conflict") client.request("cart_get").then(setCart, () => {});
  } finally {
    btn.textContent = "Checkout";
    btn.disabled = state.cart.lines.length === 0;
  }
}

function showOrder(order) {
  if (!order) return;
  const currency = order.currency || state.currency;
  $("#order-id").textContent = order.id || "";
  $("#order-lines").replaceChildren(...(order.lines || []).map((l) => {
    const p = productOf(l.product);
    return h("li", {}, h("span", {}, `${p.title} × ${l.qty}`), h("strong", {}, money(l.amount ?? l.unit_price * l.qty, currency)));
  }));
  $("#order-total").textContent = money(order.total, currency);
  const dlg = $("#order-dialog");
  dlg.dataset.orderId = order.id || "";
  if (!dlg.open) dlg.showModal();
}

// --- social proof, counters, likes -----------------------------------------------------

function purchaseText(d) {
  const names = (d.names || []).filter(Boolean);
  const count = d.count || 1;
  const qty = d.qty || 1;
  const who = names.length ? names[0] : "Someone";
  if (count <= 1) return `${who} bought ${qty}`;
  const others = count - 1;
  return `${who} and ${others} other${others === 1 ? "" : "s"} bought ${qty}`;
}

function onPurchase(d) {
  const p = productOf(d.product);
  const li = h("li", { class: "tick" },
    avatarFor((d.names || [""])[0] || "?", "tick-avatar"),
    h("span", { class: "tick-text" }, h("strong", {}, purchaseText(d)), " ", h("span", { class: "tick-product" }, p.title)),
  );
  const list = $("#ticker");
  list.append(li);
  while (list.children.length > 4) list.firstElementChild.remove();
  setTimeout(() => li.classList.add("old"), 6000);
}

function setCounters(c) {
  if (!c) return;
  Object.assign(state.counters, c);
  $("#viewers").textContent = compact(state.counters.viewers);
  renderLikes();
}

function renderLikes() {
  // Server total plus taps not yet counted by the server.
  $("#likes").textContent = compact(state.counters.likes + state.pendingLikes);
}

let likeTimer = null;
function like() {
  state.pendingLikes += 1;
  renderLikes();
  floatHeart();
  if (!likeTimer) {
    likeTimer = setTimeout(async () => {
      likeTimer = null;
      const count = state.pendingLikes;
      if (!count) return;
      try {
        await client.request("like", { count });
        state.sentLikes += count;
        state.counters.likes += count; // until the next counters event replaces it
      } catch { /* likes are best-effort */ }
      state.pendingLikes -= count;
      renderLikes();
    }, LIKE_BATCH_MS);
  }
}

function floatHeart() {
  const heart = h("span", { class: "heart" });
  heart.innerHTML = '<svg viewBox="0 0 24 24"><path d="M12 21s-7.5-4.6-9.6-9.3C1 8.4 3 5 6.4 5c2 0 3.3 1.1 4.1 2.3h3C14.3 6.1 15.6 5 17.6 5 21 5 23 8.4 21.6 11.7 19.5 16.4 12 21 12 21z"/></svg>';
  heart.style.color = ["#ff4d7d", "#ff7a45", "#c77dff", "#ffd23f"][Math.floor(Math.random() * 4)];
  heart.style.setProperty("--dx", `${Math.round(Math.random() * 40 - 20)}px`);
  $("#hearts").append(heart);
  setTimeout(() => heart.remove(), 1600);
}

// --- session ----------------------------------------------------------------------------

function setStatus(status) {
  state.status = status;
  if (status === "live") state.seenLive = true;
  document.body.dataset.status = status;
  document.body.dataset.mode = state.vod ? "vod" : "live";
  const badge = $("#live-badge");
  badge.dataset.status = state.vod ? "vod" : status;
  badge.textContent = state.vod
    ? (state.kind === "video" ? "VIDEO" : "REPLAY")
    : { live: "LIVE", scheduled: "SOON", ended: "ENDED" }[status] || status.toUpperCase();
  const overlay = $("#status-overlay");
  overlay.hidden = status === "live" || state.vod;
  $("#replay-btn").hidden = status !== "ended";
  if (status === "scheduled") {
    $("#status-title").textContent = "Starting soon";
    $("#status-sub").textContent = "The host hasn’t gone live yet. Stay here — it starts automatically.";
  } else if (status === "ended") {
    $("#status-title").textContent = "The live has ended";
    $("#status-sub").textContent = "Thanks for watching! Your cart is saved — you can still check out.";
  }
}

async function learnStartedAt(snapshot) {
  if (snapshot.started_at) { state.startedAt = snapshot.started_at; return; }
  if (state.status !== "live" && state.status !== "ended") return;
  try {
    const s = await api(`/api/sessions/${encodeURIComponent(SESSION)}`);
    if (s.started_at) state.startedAt = s.started_at;
  } catch {
    const pin = snapshot.pinned;
    if (pin && state.startedAt == null) state.startedAt = pin.pinned_at - pin.stream_ts_ms;
  }
}

function renderShowcase() {
  const list = $("#showcase");
  list.replaceChildren(...state.showcase.map((pid) => {
    const p = productOf(pid);
    const deal = state.shown?.product.id === pid && openDeal(pid);
    if (deal) {
      return h("li", { class: "showcase-item", dataset: { product: pid, deal: "open" } },
        h("img", { src: p.image_url || "/static/img/placeholder.svg", alt: "", width: 56, height: 56, loading: "lazy" }),
        h("div", { class: "showcase-body" },
          h("p", { class: "showcase-title" }, p.title),
          h("p", { class: "muted small" }, `⚡ ${money(deal.price, p.currency)} with Buy now`),
        ),
        h("button", { class: "btn btn-small", type: "button", disabled: true,
          title: "Flash deal: buy it from the card with Buy now",
          "aria-label": `${p.title} is on a flash deal: use Buy now on the card` }, "Deal"),
      );
    }
    return h("li", { class: "showcase-item", dataset: { product: pid } },
      h("img", { src: p.image_url || "/static/img/placeholder.svg", alt: "", width: 56, height: 56, loading: "lazy" }),
      h("div", { class: "showcase-body" },
        h("p", { class: "showcase-title" }, p.title),
        h("p", { class: "muted small" }, money(p.price, p.currency)),
      ),
      h("button", { class: "btn btn-small", type: "button", "aria-label": `Add ${p.title} to cart`,
        onclick: () => addToCart(pid) }, "Add"),
    );
  }));
}

async function onJoined({ snapshot, recovered, resumed, replayMissing = false }) {
  state.joins.push({ at: Date.now(), recovered, resumed, replayMissing, seq: snapshot.seq });
  state.title = snapshot.title;
  state.kind = snapshot.kind;
  if (snapshot.creator) state.creator = snapshot.creator;
  $("#show-title").textContent = snapshot.title;
  $("#show-creator").textContent = state.creator ? `@${state.creator}` : "";
  $(".host-avatar").replaceWith(avatarFor(state.creator || snapshot.title, "host-avatar"));
  document.title = `${snapshot.title} · livecart`;
  for (const p of snapshot.showcase || []) state.products.set(p.id, p);
  state.showcase = (snapshot.showcase || []).map((p) => p.id);
  if (snapshot.showcase?.[0]?.currency) state.currency = snapshot.showcase[0].currency;
  setStatus(snapshot.status);
  setCounters(snapshot.counters);
  // A shoppable video plays on demand; a live that ended before we came plays as a replay.
  if ((snapshot.kind === "video" && snapshot.status === "live") ||
      (snapshot.status === "ended" && !state.seenLive)) enterVod();
  renderShowcase();
  if (!recovered && !state.vod) {
    // The snapshot is the truth: drop what was pending and schedule the current pin.
    // (Synchronously: live events that follow this reply must not be wiped.)
    state.timeline = [];
    const pin = snapshot.pinned;
    if (pin) {
      if (pin.deal) state.deals.set(pin.product.id, pin.deal);
      schedule(pin.stream_ts_ms, pin);
    } else {
      schedule(-Infinity, null);
    }
  }
  await learnStartedAt(snapshot);
  if (state.me?.sub) {
    client.request("cart_get").then(setCart, (err) => {
      state.cartError = `Cart unavailable: ${errorText(err)}`;
      renderCart();
    });
  }
  tick();
}

function wireEvents() {
  client.on("joined", (j) => onJoined(j).catch((e) => console.error(e)));
  client.on("pinned", (pin) => {
    state.products.set(pin.product.id, { ...productOf(pin.product.id), ...pin.product });
    if (pin.deal) {
      state.deals.set(pin.product.id, pin.deal);
      state.soldOut.delete(pin.product.id);
    }
    if (!state.vod) schedule(pin.stream_ts_ms, pin);
  });
  client.on("unpinned", (d, ev) => {
    if (state.vod) return;
    // the unpin's own stream position (older servers: event time − started_at)
    const at = typeof d.stream_ts_ms === "number" ? d.stream_ts_ms
      : state.startedAt != null ? ev.ts - state.startedAt : -Infinity;
    schedule(at, null);
  });
  client.on("deal", (d) => {
    const prev = state.deals.get(d.product) || {};
    state.deals.set(d.product, { ...prev, ...d });
    if (d.status === "open" && d.stock_left > 0) state.soldOut.delete(d.product);
    renderCard();
  });
  client.on("sold_out", (d) => {
    state.soldOut.add(d.product);
    const deal = state.deals.get(d.product);
    if (deal) deal.stock_left = 0;
    const p = state.products.get(d.product);
    if (p && !openDeal(d.product)) p.stock = 0;
    renderCard();
  });
  client.on("product", (d) => {
    const p = state.products.get(d.id);
    if (p) Object.assign(p, { price: d.price, stock: d.stock });
    renderCard();
    renderShowcase();
  });
  client.on("purchase", onPurchase);
  client.on("counters", setCounters);
  client.on("cart", setCart);
  client.on("order", (order) => {
    // Placed from another of my devices: show it here too.
    if ($("#order-dialog").dataset.orderId !== order.id) toast(`Order ${order.id} placed`, "ok");
  });
  client.on("session", (d, ev) => {
    if (d.status === "live" && state.startedAt == null) state.startedAt = ev.ts;
    setStatus(d.status);
    if (d.status === "live" && state.kind === "video") enterVod();
    tick();
  });
  client.on("state", ({ state: s, delayMs, reconnected, offline }) => {
    document.body.dataset.conn = s;
    const banner = $("#conn-banner");
    if (s === "reconnecting") {
      banner.hidden = false;
      banner.dataset.kind = "warn";
      $("#conn-text").textContent = offline
        ? "You’re offline — reconnecting…"
        : `Reconnecting… ${delayMs > 1500 ? `(retry in ${Math.ceil(delayMs / 1000)} s)` : ""}`;
    } else if (s === "open" && reconnected) {
      banner.dataset.kind = "ok";
      $("#conn-text").textContent = "Back live";
      setTimeout(() => { if (client.state === "open") banner.hidden = true; }, 1500);
    } else if (s === "open") {
      banner.hidden = true;
    } else if (s === "closed") {
      banner.hidden = false;
      banner.dataset.kind = "error";
      $("#conn-text").textContent = "Disconnected. Reload the page to rejoin.";
    }
  });
}

function wireUi() {
  $("#like-btn").addEventListener("click", like);
  $("#cart-btn").addEventListener("click", () => {
    renderCart();
    $("#cart-dialog").showModal();
  });
  for (const dlg of document.querySelectorAll("dialog")) {
    dlg.addEventListener("click", (e) => {
      if (e.target === dlg || e.target.closest("[data-close]")) dlg.close();
    });
  }
  $("#checkout-btn").addEventListener("click", checkout);
  $("#replay-btn").addEventListener("click", enterVod);
  $("#buy-now").addEventListener("click", () => state.shown && buyNow(state.shown.product.id));
  $("#add-cart").addEventListener("click", () => state.shown && addToCart(state.shown.product.id));
  $("#pin-img").addEventListener("click", () => {
    if (state.shown && state.me?.sub) client.request("click", { product: state.shown.product.id }).catch(() => {});
  });
  const nv = new URL("/demo/watch", location.href);
  nv.searchParams.set("session", SESSION);
  if (params.has("delay_ms")) nv.searchParams.set("delay_ms", String(DELAY_MS));
  $("#new-viewer").href = nv.pathname + nv.search;
  $("#delay-note").textContent = `${(DELAY_MS / 1000).toFixed(1)} s`;
}

async function main() {
  wireUi();
  const me = await identity();
  state.me = me;
  $("#me-line").textContent = `Watching as ${me.name || "guest"}`;
  client = new LivecartClient({ url: wsUrlFor("/ws"), token: me.token, pingIntervalMs: 5000, pingTimeoutMs: 3000 });
  window.__livecart = { client, state }; // debugging and browser-test hook
  wireEvents();
  mountViewerFormats(client, state); // auctions and giveaways (auction.js)
  window.__livecart.chat = mountChat({ client, session: SESSION, me, root: $("#chat-panel") });
  promo = installViewerPromos({ client, state, productOf, rerender: renderCard });
  player = new HlsPlayer({ stage: stageEl, canvas, session: SESSION,
    holdMs: Number(params.get("delay_ms")) || 0, serverNow: () => client.serverNow() });
  if (await player.start()) {
    player.onBoundary = pollPosition; // ask `position` as the video crosses a pin's edge
  } else {
    player = null;
    document.body.dataset.player = "standin";
    const stream = new FakeStream(canvas, playerPosition, () => (state.vod ? "live" : state.status));
    stream.start();
  }
  setInterval(tick, 50);
  setInterval(pollPosition, 500);
  await client.connect();
  await client.join(SESSION).catch((err) => {
    toast(`Couldn’t join the show: ${errorText(err)}`, "error", 10000);
    $("#show-title").textContent = "Show not found";
  });
  scheduleTokenRefresh(me, me.token);
}

main().catch((err) => {
  console.error(err);
  toast(`Couldn’t start: ${errorText(err)}`, "error", 10000);
});
