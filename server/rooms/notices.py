"""What follows a new order on this node: the business metrics, one log line, and the
stock and social-proof notices of its rooms (aggregated: server/rooms/social.py)."""

from __future__ import annotations

import logging
from typing import Any

from server.cart.orders import Placed
from server.edge.client import Client
from server.observe.metrics import Metrics
from server.rooms.social import SocialProof

log = logging.getLogger("livecart.node")


class OrderNotices:
    def __init__(self, metrics: Metrics, social: SocialProof) -> None:
        self.metrics, self.social = metrics, social

    async def placed(self, client: Client, placed: Placed) -> None:
        """A buy_now or checkout answered (its private events went out from its script)."""
        if not placed.new:
            return
        order = placed.order
        self.metrics.order_placed(order)
        log.info("order %s placed: %s %s, %d line(s)", order["id"], order["total"],
                 order["currency"], len(order["lines"]),
                 extra={"order": order["id"], "user": order["buyer"], "session": client.session,
                        "total": order["total"], "currency": order["currency"]})
        for line in order["lines"]:
            self.social.stock.changed(str(line["product"]))
        if client.session is not None:
            name = client.identity.display_name()
            for line in order["lines"]:
                self.social.note(client.session, str(line["product"]), int(line["qty"]), name)

    def prize_placed(self, order: dict[str, Any]) -> None:
        """A new auction or giveaway order."""
        self.metrics.order_placed(order)
        log.info("order %s placed (%s): %s %s", order["id"], order["source"], order["total"],
                 order["currency"], extra={"order": order["id"], "user": order["buyer"]})
        for line in order["lines"]:
            self.social.stock.changed(str(line["product"]))
