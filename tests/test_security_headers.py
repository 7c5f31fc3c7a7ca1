"""Security headers: on pages, on errors, on the docs page; HSTS only over HTTPS."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from crm_bridge.security_headers import DOCS_POLICY, PAGE_POLICY, SecurityHeadersMiddleware


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(SecurityHeadersMiddleware)

    @app.get("/page", response_class=HTMLResponse)
    def page() -> str:
        return "<p>张三</p>"

    @app.get("/refused")
    def refused() -> None:
        raise HTTPException(status_code=403)

    return app


async def _get(path: str, base_url: str = "http://test") -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        return await client.get(path)


async def test_a_page_gets_the_strict_policy_and_the_common_headers():
    response = await _get("/page")
    assert response.headers["content-security-policy"] == PAGE_POLICY
    assert "script-src 'self';" in PAGE_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in response.headers


async def test_errors_and_unknown_paths_carry_them_too():
    for path in ("/refused", "/nowhere"):
        response = await _get(path)
        assert response.status_code in (403, 404)
        assert response.headers["content-security-policy"] == PAGE_POLICY


async def test_only_the_docs_page_may_load_swagger_from_its_cdn():
    response = await _get("/docs")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == DOCS_POLICY
    assert "cdn.jsdelivr.net" not in PAGE_POLICY


async def test_hsts_is_sent_over_https():
    response = await _get("/page", base_url="https://test")
    assert response.headers["strict-transport-security"] == "max-age=31536000"
