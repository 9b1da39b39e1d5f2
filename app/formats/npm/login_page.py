"""The page a browser opens for npm's web login: one form, no script, no cookie.

It is framed by nobody and posts only to itself (its headers say so), so another
site can neither overlay it nor take the password elsewhere; every value shown is
escaped.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:24rem;margin:4rem auto}}
label,input,button{{display:block;width:100%;margin:.4rem 0}}.error{{color:#b00}}</style>
</head><body><h1>{title}</h1>
{content}
</body></html>
"""


def _page(title: str, content: str, status: int = 200) -> web.Response:
    text = _PAGE.format(title=escape(title), content=content)
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


def form(repository: str, error: str = "", name: str = "") -> web.Response:
    shown = f'<p class="error">{escape(error)}</p>' if error else ""
    content = (
        f"<p>Sign in to give npm a token for artifactapi ({escape(repository)}).</p>{shown}"
        '<form method="post">'
        '<label for="username">User name</label>'
        f'<input id="username" name="username" autocomplete="username" required'
        f' value="{escape(name)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password"'
        ' autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
    )
    return _page("npm login", content, 401 if error else 200)


def signed_in(name: str) -> web.Response:
    content = f"<p>Signed in as {escape(name)}. npm has its token: return to the terminal.</p>"
    return _page("npm login", content)


def gone() -> web.Response:
    content = "<p>This login is unknown, expired or done. Run <code>npm login</code> again.</p>"
    return _page("npm login", content, 404)
