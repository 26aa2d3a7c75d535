"""Who is asking, for every console request: the session behind the cookie, its token checked again by the lab's
Authenticator against the same role lists LabService uses, so a role may do in the browser exactly what it may do
with labctl."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from labd.lab import Lab
from labd.scheduler.dispatcher import Dispatcher
from labd.servicers.lab import ENGINEERS, READERS
from labd.web.session import Sessions, WebSession, same_origin, same_secret, session_cookie
from pilotlab import domain as d

log = logging.getLogger("labd.web")

ADMINS = [d.Role.ADMIN]
# What each page and form asks the Authenticator: the roles and the action's words of the matching RPC.
LIST_DEVICES = (READERS, "list devices")
LIST_RUNS = (READERS, "list runs")
READ_RUNS = (READERS, "read runs")
WATCH_RUNS = (READERS, "watch runs")
LIST_SUITES = (READERS, "list suites")
PULL_REPORTS = (READERS, "pull reports")
SUBMIT_RUNS = (ENGINEERS, "submit runs")
CANCEL_RUNS = (ENGINEERS, "cancel runs")
SET_DEVICE_STATE = (ADMINS, "drain, release or quarantine devices")
READ_AUDIT = (ADMINS, "read the audit log")
SIGN_IN = (READERS, "sign in to the web console")


@dataclass
class Console:
    """What the console's handlers share: the lab, the dispatcher to kick, the signed-in sessions."""

    lab: Lab
    dispatcher: Dispatcher
    secure: bool
    sessions: Sessions = field(default_factory=Sessions)
    closing: asyncio.Event = field(default_factory=asyncio.Event)


CONSOLE = web.AppKey("console", Console)


def permitted(role: d.Role, allowed: Sequence[d.Role]) -> bool:
    """Whether Authenticator.require lets this role through `allowed`: admins anything but act as a device. Used
    only to leave out buttons; the POST behind each button is checked by the Authenticator itself."""
    return role in allowed or (role == d.Role.ADMIN and list(allowed) != [d.Role.DEVICE])


@dataclass
class Viewer:
    """A signed-in browser whose token the Authenticator has just accepted for the request's action."""

    session: WebSession
    who: d.Principal

    def can(self, rule: tuple[Sequence[d.Role], str]) -> bool:
        return permitted(self.who.role, rule[0])

    @property
    def csrf(self) -> str:
        return self.session.csrf


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def current_session(request: web.Request) -> WebSession | None:
    c = console_of(request)
    return c.sessions.get(request.cookies.get(session_cookie(c.secure)))


def to_login(request: web.Request, why: str = "") -> web.HTTPSeeOther:
    target = f"/login?next={quote(request.path_qs, safe='')}"
    return web.HTTPSeeOther(target + (f"&why={why}" if why else ""))


async def viewer(request: web.Request, rule: tuple[Sequence[d.Role], str], api: bool = False) -> Viewer:
    """The signed-in caller, when the Authenticator accepts its token for this rule's roles. Not signed in, or its
    token revoked or expired since: the session ends and a page goes to sign-in (an API call gets 401). A role the
    rule does not allow raises Denied, which the error middleware turns into 403."""
    c = console_of(request)
    sess = current_session(request)
    if sess is None:
        if api:
            raise web.HTTPUnauthorized(text="not signed in")
        stale = bool(request.cookies.get(session_cookie(c.secure)))  # a session this labd no longer has
        raise to_login(request, "ended" if stale else "")
    roles, action = rule
    try:
        who = await asyncio.to_thread(c.lab.auth.require, sess.token, roles, action)
    except d.Unauthenticated as e:
        ended = c.sessions.close_token(sess.token_id)
        log.info("web: token %s refused (%s); %d console session(s) ended", sess.token_id, e, ended)
        if api:
            raise web.HTTPUnauthorized(text=str(e)) from None
        raise to_login(request, "token") from None
    return Viewer(sess, who)


async def posted(request: web.Request, rule: tuple[Sequence[d.Role], str]) -> tuple[Viewer, dict[str, str]]:
    """A form POST: same origin, the session's CSRF token, and a role the rule allows; else 403 (or sign-in)."""
    if not same_origin(request.headers, request.scheme, request.host):
        raise web.HTTPForbidden(text="refused: this form was posted from another site")
    form = {k: str(v) for k, v in (await request.post()).items() if isinstance(v, str)}
    sess = current_session(request)
    if sess is not None and not same_secret(form.get("csrf"), sess.csrf):
        raise web.HTTPForbidden(text="refused: the form's CSRF token is missing or wrong; reload the page and retry")
    return await viewer(request, rule), form
