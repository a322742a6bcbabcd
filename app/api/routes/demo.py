"""GET /demo: a page to try the service in a browser (app/demo/: static HTML, CSS and plain
JavaScript, no build step). It calls this service's API from the same origin, so API keys apply as
to any client; the page is open, like the health routes, since it holds nothing but code.

A strict Content-Security-Policy keeps it that way: scripts, styles and connections only from this
origin, images only from it or from the photos the user picks (blob: URLs), nothing framed, no
forms posted elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.errors import ServiceError

PAGE_DIR = Path(__file__).resolve().parents[2] / "demo"
FILES = {"index.html": "text/html; charset=utf-8", "demo.css": "text/css; charset=utf-8",
         "demo.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "Cache-Control": "no-cache",
}

router = APIRouter(prefix="/demo", tags=["demo"], include_in_schema=False)


def _file(name: str) -> FileResponse:
    if name not in FILES:
        raise ServiceError("not_found", f"no such endpoint: /demo/{name}")
    return FileResponse(PAGE_DIR / name, media_type=FILES[name], headers=SECURITY_HEADERS)


@router.get("")
async def page() -> FileResponse:
    return _file("index.html")


@router.get("/{name}")
async def asset(name: str) -> FileResponse:
    return _file(name)
