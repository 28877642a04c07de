"""Keeping web pages out of the control plane. Pure: no web framework here, so it is tested on its own.

A web page the user happens to open can make their browser send requests to the shim: to a LAN
address, from inside the trusted network, with no way for the shim to tell it from Predbat by
address. What gives such a request away is what browsers add and pages cannot remove:

* ``Origin``: sent with every cross-origin POST (and same-origin ones). A request that changes
  something is refused unless its origin is listed in ``http.cors_origins``.
* ``Sec-Fetch-Site``: ``cross-site`` or ``same-site`` from another page; refused unless the
  ``Origin`` is listed.
* The body's content type: a page may send ``text/plain``, ``application/x-www-form-urlencoded``
  or ``multipart/form-data`` without asking the server first (a CORS "simple request"). A body
  must be declared ``application/json``, which a browser only sends cross-origin after a
  preflight that only listed origins pass.

Clients that are not browsers (curl, Predbat's ``requests``) send neither header and are not
affected; they only need to send their body as ``application/json``, as Predbat already does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

#: The one media type a request body may have (parameters such as ``charset`` are fine).
JSON_TYPE = "application/json"
#: Fetch sites that mean "another page asked for this".
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request that would change something is refused: 403 (a foreign page) or 415 (its body type)."""

    status: Literal[403, 415]
    code: Literal["cross_origin", "unsupported_media_type"]
    message: str


class BrowserGuard:
    """Decides whether a request that changes something may come from where the browser says it does."""

    def __init__(self, allowed_origins: Iterable[str]) -> None:
        self._allowed = frozenset(origin.strip().lower().rstrip("/") for origin in allowed_origins)

    def check(self, origin: str | None, fetch_site: str | None) -> Refusal | None:
        """None when a request with these ``Origin`` and ``Sec-Fetch-Site`` headers may change something."""
        if origin is not None:
            if origin.strip().lower().rstrip("/") in self._allowed:
                return None
            return Refusal(
                403,
                "cross_origin",
                f"a web page at {origin.strip() or 'an unnamed origin'} may not change anything here: "
                "only origins listed in http.cors_origins may",
            )
        if fetch_site is not None and fetch_site.strip().lower() in _FOREIGN_SITES:
            return Refusal(
                403,
                "cross_origin",
                f"the browser says this request comes from another site (Sec-Fetch-Site: {fetch_site.strip()}) "
                "without an Origin listed in http.cors_origins; nothing was changed",
            )
        return None


def media_type(content_type: str | None) -> str | None:
    """The media type of a ``Content-Type`` header, lower case, without parameters; None when absent or blank."""
    if content_type is None:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind or None


def body_type_refusal(content_type: str | None, *, has_body: bool) -> Refusal | None:
    """None when a body of ``content_type`` may go ahead: JSON, or no body with no type at all."""
    kind = media_type(content_type)
    if kind == JSON_TYPE or (kind is None and not has_body):
        return None
    said = f"Content-Type {kind}" if kind else "a body with no Content-Type"
    return Refusal(
        415,
        "unsupported_media_type",
        f"{said} is not accepted for a change (web pages can send it without asking): send the body with "
        f"'Content-Type: {JSON_TYPE}', as a JSON object with the command's keys or, for a command that takes "
        'one value, that value alone (e.g. 80 or "Cancel")',
    )
