// Landing page: demo sessions with links to the creator console and viewer pages.
import { $, h, api, mintToken, toast, errorText } from "./common.js";
import { upcoming } from "./chat.js";

const STATUS = { live: "LIVE", scheduled: "SOON", ended: "ENDED" };

async function productImages(ids) {
  const found = await Promise.all(ids.slice(0, 4).map((id) =>
    api(`/api/products/${encodeURIComponent(id)}`).catch(() => null)));
  return found.filter(Boolean);
}

async function card(session) {
  const [creatorToken, products] = await Promise.all([
    mintToken(session.creator, "creator", session.creator).catch(() => null),
    productImages(session.showcase || []),
  ]);
  const creatorUrl = creatorToken
    ? `/demo/creator?session=${encodeURIComponent(session.id)}&token=${encodeURIComponent(creatorToken)}`
    : null;
  const watchUrl = `/demo/watch?session=${encodeURIComponent(session.id)}`;
  const titleId = `title-${session.id}`;
  return h("li", { class: "session-card", dataset: { session: session.id }, "aria-labelledby": titleId },
    h("div", { class: "session-thumb" },
      session.kind === "video"
        // a shoppable video is watched on demand: never badged LIVE
        ? h("span", { class: "badge badge-status", dataset: { status: "vod" } }, session.status === "ended" ? "ENDED" : "VIDEO")
        : h("span", { class: "badge badge-status", dataset: { status: session.status } }, STATUS[session.status] || session.status),
      h("div", { class: "thumb-products" },
        products.map((p) => h("img", { src: p.image_url || "/static/img/placeholder.svg", alt: p.title, width: 64, height: 64 }))),
    ),
    h("div", { class: "session-body" },
      h("h2", { id: titleId }, session.title),
      h("p", { class: "session-meta" },
        `@${session.creator} · ${session.kind === "video" ? "shoppable video" : "live show"} · ${(session.showcase || []).length} products`),
      h("div", { class: "session-actions" },
        creatorUrl
          ? h("a", { class: "btn btn-ghost", href: creatorUrl, "data-role": "creator-link" }, "Creator console")
          : h("span", { class: "muted small" }, "Creator token unavailable"),
        h("a", { class: "btn btn-primary", href: watchUrl, "data-role": "watch-link" }, "▶ Watch"),
        h("a", { class: "btn btn-ghost", href: watchUrl, target: "_blank", rel: "noopener", "data-role": "new-viewer" },
          "+ New viewer", h("span", { class: "sr-only" }, " (opens a new tab)")),
        upcoming(session),
      ),
    ),
  );
}

async function main() {
  const list = $("#sessions");
  try {
    const { sessions } = await api("/api/sessions");
    if (!sessions.length) {
      list.replaceChildren(h("li", { class: "empty-state muted" }, "No sessions yet. Start the server with --demo to seed one."));
    } else {
      list.replaceChildren(...(await Promise.all(sessions.map(card))));
    }
  } catch (err) {
    list.replaceChildren(h("li", { class: "empty-state" }, `Couldn’t load sessions: ${errorText(err)}`));
    toast(errorText(err), "error");
  } finally {
    list.setAttribute("aria-busy", "false");
  }
}

main();
