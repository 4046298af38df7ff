"""``/api/docs`` (Swagger UI) and ``/api/redoc``: their scripts at pinned versions, each with
a Subresource Integrity hash (a changed file on the CDN is refused by the browser, not run on
the dashboard's origin), under a Content-Security-Policy that allows that CDN and nothing else.

The hashes are those of the files in the npm packages ``swagger-ui-dist@5.32.0`` and
``redoc@2.5.2`` (the CDN serves the packages' files as they are):
``openssl dgst -sha384 -binary swagger-ui-bundle.js | base64``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

CDN = "https://cdn.jsdelivr.net/npm"
SWAGGER = f"{CDN}/swagger-ui-dist@5.32.0"
SWAGGER_JS = (
    f"{SWAGGER}/swagger-ui-bundle.js",
    "sha384-7xcoc6ZKDFF7Ek627QTC3Bg/K+5Y36NJ8MWAE43D2m6+3Sh9XO3tdsfHhrS8gNIQ",
)
SWAGGER_CSS = (
    f"{SWAGGER}/swagger-ui.css",
    "sha384-3nuX7df3EaAoiqLBeyS1Ola0Gpg9ryJKVtarubwfnA1cOH8AWHUdbPSIvEqPZ9VH",
)
REDOC_JS = (
    f"{CDN}/redoc@2.5.2/bundles/redoc.standalone.js",
    "sha384-70P5pmIdaQdVbxvjhrcTDv1uKcKqalZ3OHi7S2J+uzDl0PW8dO6L+pHOpm9EEjGJ",
)
OPENAPI_URL = "/api/openapi.json"

# The page's one inline script is allowed by its sha256 hash in the policy: 'unsafe-inline'
# for scripts would allow injected ones too.
_SWAGGER_INIT = (
    "window.ui = SwaggerUIBundle({url: '" + OPENAPI_URL + "', dom_id: '#swagger-ui',"
    " layout: 'BaseLayout', deepLinking: true, showExtensions: true,"
    " showCommonExtensions: true, presets: [SwaggerUIBundle.presets.apis,"
    " SwaggerUIBundle.SwaggerUIStandalonePreset]});"
)


def _sha256(text: str) -> str:
    import base64
    import hashlib

    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def policy(inline_script: str | None = None) -> str:
    scripts = f"'self' {CDN}/" + (f" '{_sha256(inline_script)}'" if inline_script else "")
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline' {CDN}/;"
        " img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self';"
        " font-src 'self' data: https://fonts.gstatic.com; worker-src blob:;"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def _headers(inline_script: str | None) -> dict[str, str]:
    return {
        "Content-Security-Policy": policy(inline_script),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def swagger_html() -> str:
    (js, js_sri), (css, css_sri) = SWAGGER_JS, SWAGGER_CSS
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>iotmon - API</title>
<link rel="stylesheet" href="{css}" integrity="{css_sri}" crossorigin="anonymous">
</head><body><div id="swagger-ui"></div>
<script src="{js}" integrity="{js_sri}" crossorigin="anonymous"></script>
<script>{_SWAGGER_INIT}</script>
</body></html>"""


def redoc_html() -> str:
    js, sri = REDOC_JS
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>iotmon - API</title></head><body>
<redoc spec-url="{OPENAPI_URL}"></redoc>
<script src="{js}" integrity="{sri}" crossorigin="anonymous"></script>
</body></html>"""


def install(app: FastAPI) -> None:
    @app.get("/api/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return HTMLResponse(swagger_html(), headers=_headers(_SWAGGER_INIT))

    @app.get("/api/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(redoc_html(), headers=_headers(None))
