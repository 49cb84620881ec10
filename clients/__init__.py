"""Clients of a Live server: the terminal chat (`openlive chat`), the load generator (`openlive bench`)
and the web console (static files in `web/`, served by the server at `/`). They speak only the public
wire protocol, through `protocol`'s models."""

from clients.connection import live_url, setup_message
from clients.load_stats import BenchResult, Percentiles

__all__ = ["BenchResult", "Percentiles", "live_url", "setup_message"]
