"""``replicate ui``: a read-only web page over a repository (aiohttp app, templates, static)."""

from replicate.ui.app import Server, make_app, serve

__all__ = ["Server", "make_app", "serve"]
