"""Products whose available stock changed on this node since the last social-proof flush
(a sale, a deal opening or closing, a hold given back), and those an undone purchase gave
units back to. Told by the services that move stock; read and cleared by
server/rooms/social.py, which announces each product once per flush."""

from __future__ import annotations


class StockWatch:
    def __init__(self) -> None:
        self.dirty: set[str] = set()
        self.returned: set[str] = set()

    def changed(self, product: str) -> None:
        self.dirty.add(product)

    def units_returned(self, product: str) -> None:
        self.dirty.add(product)
        self.returned.add(product)

    def take(self) -> tuple[set[str], set[str]]:
        """(changed, returned) since the last take, cleared."""
        taken = self.dirty, self.returned
        self.dirty, self.returned = set(), set()
        return taken
