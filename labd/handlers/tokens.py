"""Minting user tokens (engineer, certifier, agent); only their hash is stored."""

from __future__ import annotations

from labd.auth import hash_token, new_token
from labd.state import Store
from pilotlab import domain as d


def create_token(store: Store, role_name: str) -> tuple[str, d.Role]:
    """A new token of a user role; returns it (shown once) and its role."""
    try:
        role = d.Role(role_name)
    except ValueError:
        role = None
    if role is None or role not in d.USER_ROLES:
        raise d.Invalid(f"unknown role {role_name!r}; use one of {', '.join(r.value for r in d.USER_ROLES)}")
    token = new_token(role)
    store.create_token(role, hash_token(token))
    return token, role
