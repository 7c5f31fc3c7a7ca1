"""Security headers on every HTTP answer.

The pages are served from this origin only: their scripts, styles, audio and WebSocket. The
Content-Security-Policy says so, which turns an injected ``<script>`` in a customer's name or a
transcript into inert text even where escaping were ever missed. Inline styles stay allowed
(templates set small layout styles); inline scripts do not. No page loads anything from
elsewhere (there is no Swagger UI, which would need a CDN: ``/openapi.json`` is the document).

HSTS is sent on answers over HTTPS, and on every answer with ``secure_cookies`` (the service
behind a proxy that ends TLS, which reaches it over plain HTTP).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), geolocation=(), microphone=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeadersMiddleware:
    """Adds the headers above to every HTTP response (and HSTS when served over HTTPS, or
    always with ``hsts_always``)."""

    def __init__(self, app: ASGIApp, hsts_always: bool = False) -> None:
        self.app = app
        self.hsts_always = hsts_always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = self.hsts_always or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", PAGE_POLICY)
                if https:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)
