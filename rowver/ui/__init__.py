"""``rowver ui``: a read-only web app over a rowver database (pages in ``_pages``, the
ASGI app in ``_web``, charts as server-side SVG in ``_svg``)."""

from ._web import create_app, serve

__all__ = ["create_app", "serve"]
