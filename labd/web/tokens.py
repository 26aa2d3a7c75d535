"""The Tokens page (admins): every token with its role, times, uses and state, never a secret; a form that mints a
token and shows its secret once; and a revoke button on each live token. Each action calls the handler the matching
RPC calls (CreateToken, ListTokens, RevokeToken), with the same role check."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from labd.handlers import tokens
from labd.web.access import ADMINS, console_of, posted, viewer
from labd.web.render import page
from pilotlab import domain as d

log = logging.getLogger("labd.web")

LIST_TOKENS = (ADMINS, "list tokens")
CREATE_TOKENS = (ADMINS, "create tokens")
REVOKE_TOKENS = (ADMINS, "revoke tokens")
ROLES = [r.value for r in d.USER_ROLES]


async def tokens_page(request: web.Request, minted: tokens.Minted | None = None) -> web.Response:
    v = await viewer(request, LIST_TOKENS)
    lab = console_of(request).lab
    found = await asyncio.to_thread(tokens.list_tokens, lab.store)
    return await page(request, "tokens.html.j2", v, tokens=found, roles=ROLES, minted=minted,
                      now_ms=lab.clock.now_ms())


def _count(form: dict[str, str], key: str, what: str) -> int:
    raw = form.get(key, "").strip()
    try:
        return int(raw) if raw else 0
    except ValueError:
        raise d.Invalid(f"{what} must be a whole number, not {raw!r}") from None


async def create(request: web.Request) -> web.Response:
    """POST /tokens: role, expires_in (seconds, optional), max_uses (agent tokens, optional). The answer is the page
    itself with the new secret, shown this once (never stored, never in a redirect or a flash)."""
    v, form = await posted(request, CREATE_TOKENS)
    lab = console_of(request).lab
    try:
        minted = await asyncio.to_thread(
            tokens.create_token, lab.store, lab.clock, form.get("role", ""),
            _count(form, "expires_in", "expires in"), _count(form, "max_uses", "max uses"), v.who)
    except d.Invalid as e:
        v.session.flash("error", str(e))
        raise web.HTTPSeeOther("/tokens") from None
    log.info("token %s (%s) created by an admin (web console)", minted.id, minted.role.value)
    response = await tokens_page(request, minted)
    response.headers["Cache-Control"] = "no-store"
    return response


async def revoke(request: web.Request) -> web.Response:
    """POST /tokens/revoke, id=TOKEN_ID."""
    v, form = await posted(request, REVOKE_TOKENS)
    lab = console_of(request).lab
    try:
        rec = await asyncio.to_thread(tokens.revoke_token, lab.store, lab.clock, form.get("id", ""), v.who)
    except (d.Invalid, d.NotFound) as e:
        v.session.flash("error", str(e))
        raise web.HTTPSeeOther("/tokens") from None
    closed = console_of(request).sessions.close_token(rec.id)
    log.info("token %s (%s) revoked by an admin (web console); %d console session(s) ended", rec.id,
             rec.role.value, closed)
    v.session.flash("ok", f"Token {rec.id} ({rec.role.value}) is revoked: refused from now on"
                    + (", with every device credential it issued." if rec.role == d.Role.AGENT else "."))
    raise web.HTTPSeeOther("/tokens")
