"""XES: privacy-first peer-to-peer voice chat. The server signals; audio goes peer to peer."""

__version__ = "0.1.0"
