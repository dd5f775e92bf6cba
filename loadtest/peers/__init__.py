"""Peer servers the bench runs beside livecart: same event shape, trivial trigger."""
