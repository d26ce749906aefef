"""Serving structgen to many callers (the concurrent engine's HTTP server and streaming); empty until then."""
