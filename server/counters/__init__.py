"""Live numbers: presence, likes, room counters (attribution and ledger build on this)."""
