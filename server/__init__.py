"""livecart: the real-time backend for live shopping."""

__version__ = "0.1.0"
