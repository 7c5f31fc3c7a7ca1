"""Security headers: on pages and errors; HSTS over HTTPS, or always behind a TLS proxy."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from crm_bridge.web import security_headers
from crm_bridge.web.security_headers import PAGE_POLICY, SecurityHeadersMiddleware


def _app(hsts_always: bool = False) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SecurityHeadersMiddleware, hsts_always=hsts_always)

    @app.get("/page", response_class=HTMLResponse)
    def page() -> str:
        return "<p>张三</p>"

    @app.get("/refused")
    def refused() -> None:
        raise HTTPException(status_code=403)

    return app


async def _get(path: str, base_url: str = "http://test", **app) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(**app))
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


def test_no_policy_lets_a_page_load_from_another_origin():
    policies = [v for k, v in vars(security_headers).items() if k.endswith("POLICY")]
    assert policies == [PAGE_POLICY]
    assert "http" not in PAGE_POLICY and "cdn" not in PAGE_POLICY


async def test_hsts_is_sent_over_https():
    response = await _get("/page", base_url="https://test")
    assert response.headers["strict-transport-security"] == "max-age=31536000"


async def test_hsts_is_sent_on_every_answer_behind_a_tls_proxy():
    response = await _get("/page", hsts_always=True)
    assert response.headers["strict-transport-security"] == "max-age=31536000"
