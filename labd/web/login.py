"""Signing in with a token (engineer, certifier or admin: agent tokens and device credentials may not) and signing
out. The sign-in form carries its own CSRF token, matched against a cookie set with the form."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from labd.web.access import SIGN_IN, console_of, current_session
from labd.web.render import page
from labd.web.session import (
    LOGIN_COOKIE_MAX_AGE_S,
    del_cookie,
    login_cookie,
    new_secret,
    safe_next,
    same_origin,
    same_secret,
    session_cookie,
    set_cookie,
)
from pilotlab import domain as d

log = logging.getLogger("labd.web")

WHY = {"token": "Your token is no longer accepted (revoked or expired); sign in with a valid one.",
       "ended": "Your session has ended (its token was revoked or expired, or labd restarted); sign in again.",
       "out": "You are signed out."}


def for_browser(message: str) -> str:
    """The Authenticator's words, which speak of labctl's flags, as a browser user needs them."""
    return (message.replace("check --token/LAB_TOKEN or ask", "check it or ask")
            .replace("pass --token or set LAB_TOKEN", "paste one"))


async def login_form(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    c = console_of(request)
    if not error and current_session(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    csrf = request.cookies.get(login_cookie(c.secure)) or new_secret()  # one per browser: two open tabs both work
    response = await page(request, "login.html.j2", None, status=status, login_csrf=csrf, error=error,
                          notice=WHY.get(request.query.get("why", ""), ""), next=safe_next(request.query.get("next")))
    set_cookie(response, login_cookie(c.secure), csrf, c.secure, LOGIN_COOKIE_MAX_AGE_S)
    return response


async def login(request: web.Request) -> web.Response:
    c = console_of(request)
    if not same_origin(request.headers, request.scheme, request.host):
        raise web.HTTPForbidden(text="refused: this form was posted from another site")
    form = await request.post()
    if not same_secret(str(form.get("csrf", "")), request.cookies.get(login_cookie(c.secure))):
        raise web.HTTPForbidden(text="refused: the sign-in form's CSRF token is missing or wrong; reload the page")
    token = str(form.get("token", "")).strip()
    try:
        who = await asyncio.to_thread(c.lab.auth.require, token, *SIGN_IN)
    except (d.Unauthenticated, d.Denied) as e:
        status = 401 if isinstance(e, d.Unauthenticated) else 403
        return await login_form(request, for_browser(str(e)), status)
    if (old := current_session(request)) is not None:
        c.sessions.close(old.id)  # a new sign-in in this browser replaces its session, under a new id
    sess = c.sessions.open(token, who)
    log.info("web: token %s (%s) signed in", who.token_id, who.role.value)
    response = web.HTTPSeeOther(safe_next(str(form.get("next", ""))))
    set_cookie(response, session_cookie(c.secure), sess.id, c.secure)
    del_cookie(response, login_cookie(c.secure), c.secure)
    raise response


async def logout(request: web.Request) -> web.Response:
    """POST /logout: ends this browser's session (needs its CSRF token, like every other form)."""
    c = console_of(request)
    sess = current_session(request)
    if not same_origin(request.headers, request.scheme, request.host):
        raise web.HTTPForbidden(text="refused: this form was posted from another site")
    form = await request.post()
    if sess is not None:
        if not same_secret(str(form.get("csrf", "")), sess.csrf):
            raise web.HTTPForbidden(text="refused: the form's CSRF token is missing or wrong; reload the page")
        c.sessions.close(sess.id)
        log.info("web: token %s signed out", sess.token_id)
    response = web.HTTPSeeOther("/login?why=out")
    del_cookie(response, session_cookie(c.secure), c.secure)
    raise response


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/devices" if current_session(request) else "/login")
