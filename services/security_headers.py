"""Security headers on every answer.

The CSP allows this site's own scripts and styles only (no inline script or style,
no `eval`), no framing, no plugins. Every dynamic answer is personal (the cart badge
is in every page's header), so none may be stored by a browser or proxy cache; only
static files keep their caching. HSTS is sent when the cookies are HTTPS-only.
"""

from __future__ import annotations

from quart import Quart, Response, request

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def init_security_headers(app: Quart) -> None:
    """Add the headers to every response, errors included."""
    static_path = f"{app.static_url_path}/" if app.static_url_path else "/static/"
    secure = app.config["SETTINGS"].session.cookie_secure

    wanted = {**HEADERS, **({"Strict-Transport-Security": HSTS} if secure else {})}
    defaults = [(name.lower(), name, value) for name, value in wanted.items()]

    @app.after_request
    async def _security_headers(response: Response) -> Response:
        headers = response.headers
        # One pass over what the answer has (a header it set itself is kept), then one add each.
        present = {name.lower() for name, _ in headers.items()}
        headers.extend([(name, value) for key, name, value in defaults if key not in present])
        if not request.path.startswith(static_path):
            headers["Cache-Control"] = "private, no-store"
        return response
