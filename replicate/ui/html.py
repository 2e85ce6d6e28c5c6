"""HTML that escapes by default: every value is text unless it is already ``Markup``."""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from functools import cache
from importlib import resources
from urllib.parse import quote

__all__ = ["Markup", "el", "escape", "join", "page", "url"]

_VOID = frozenset({"br", "hr", "img", "input", "meta", "link"})


class Markup(str):
    """A string of HTML built here, safe to insert as is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """``value`` as HTML text (quotes too, so it is safe in attributes); Markup passes."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    return Markup(sep.join(escape(part) for part in parts))


def el(tag: str, *children: object, **attrs: object) -> Markup:
    """``<tag attrs>children</tag>``; ``class_`` is ``class``, ``data_x`` is ``data-x``.

    Attributes that are None or False are left out; True writes the bare name.
    """
    names = []
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        attr = name.rstrip("_").replace("_", "-")
        names.append(f" {attr}" if value is True else f' {attr}="{escape(value)}"')
    if tag in _VOID:
        return Markup(f"<{tag}{''.join(names)}>")
    return Markup(f"<{tag}{''.join(names)}>{join(children)}</{tag}>")


def url(*segments: str, **query: str | list[str] | None) -> str:
    """``/a/b?x=1``: each segment and value percent-encoded (``/`` kept in file paths)."""
    path = "/" + "/".join(quote(s, safe="/") for s in segments)
    pairs = []
    for name, value in query.items():
        values = [] if value is None else [value] if isinstance(value, str) else value
        pairs += [f"{quote(name)}={quote(v, safe='')}" for v in values]
    return path + ("?" + "&".join(pairs) if pairs else "")


@cache
def _template(name: str) -> string.Template:
    text = resources.files("replicate.ui").joinpath("templates", name).read_text("utf-8")
    return string.Template(text)


def page(name: str, **values: object) -> str:
    """Fill template ``name`` from ``templates/``; every value is escaped unless Markup."""
    return _template(name).substitute({k: escape(v) for k, v in values.items()})
