"""How the feeds reach the venue: the reconnecting websocket base and the retrying HTTP client.

Knows nothing about any venue's payloads; the feeds in ``ingest/feeds/`` build on it.
"""
