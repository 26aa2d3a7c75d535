"""The SQL store's fleet: tokens, devices (enrolment, status, admin state, health count), suites and artifacts."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from labd.state import rows
from labd.state.base import AuditEntry, TokenRecord
from labd.state.sql.engine import SqlEngine, new_id
from labd.state.tables import ArtifactRow, DeviceRow, SuiteRow, TokenRow
from pilotlab import domain as d

_TOKENS: Table = TokenRow.__table__  # type: ignore[attr-defined]
_ISSUER = _TOKENS.alias("issuer")
_DEVICE = DeviceRow.__table__  # type: ignore[attr-defined]
_RESET_ERRORS = (update(_DEVICE).where(_DEVICE.c.id == bindparam("device"), _DEVICE.c.infra_errors != 0)
                 .values(infra_errors=0))
_COUNT_ERROR = (update(_DEVICE).where(_DEVICE.c.id == bindparam("device"))
                .values(infra_errors=_DEVICE.c.infra_errors + 1).returning(_DEVICE.c.infra_errors))
_ARTIFACTS: Table = ArtifactRow.__table__  # type: ignore[attr-defined]
_ARTIFACT = select(_ARTIFACTS).where(_ARTIFACTS.c.sha256 == bindparam("sha256"))
_GET_DEVICE = select(_DEVICE).where(_DEVICE.c.id == bindparam("id"))
_DEVICE_NAMED = select(_DEVICE).where(_DEVICE.c.name == bindparam("name"))
_SUITES: Table = SuiteRow.__table__  # type: ignore[attr-defined]
_SUITE_VERSIONS = select(_SUITES).where(_SUITES.c.id == bindparam("id"))
_FIND_TOKEN = (select(_TOKENS.c.id, _TOKENS.c.role, _TOKENS.c.device_id, _TOKENS.c.revoked, _TOKENS.c.created_ms,
                      _TOKENS.c.expires_ms, _TOKENS.c.revoked_ms, _TOKENS.c.uses, _TOKENS.c.max_uses,
                      _TOKENS.c.issued_by, _ISSUER.c.revoked_ms)
               .select_from(_TOKENS.outerjoin(_ISSUER, _ISSUER.c.id == _TOKENS.c.issued_by))
               .where(_TOKENS.c.hash == bindparam("hash")))
_FIND_TOKENS = (select(_TOKENS.c.hash, *_FIND_TOKEN.selected_columns)
                .select_from(_TOKENS.outerjoin(_ISSUER, _ISSUER.c.id == _TOKENS.c.issued_by))
                .where(_TOKENS.c.hash.in_(bindparam("hashes", expanding=True))))


def _token_record(row: Any) -> TokenRecord:
    tid, role, device_id, revoked, created, expires, revoked_ms, uses, max_uses, issued_by, issuer_revoked = row
    times = [x for x in (revoked_ms, issuer_revoked) if x]
    return TokenRecord(id=tid, role=d.Role(role), device_id=device_id, revoked=bool(times) or bool(revoked),
                       created_ms=created, expires_ms=expires, revoked_ms=min(times, default=0), uses=uses,
                       max_uses=max_uses, issued_by=issued_by)


def _semver_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("-")[0].split("."))
    except ValueError:
        return (0,)


class FleetSql(SqlEngine):
    # --- tokens -------------------------------------------------------------------------------------------
    def create_token(self, role: d.Role, token_hash: str, device_id: str | None = None, *, expires_ms: int = 0,
                     max_uses: int = 0, issued_by: str | None = None, audit: AuditEntry | None = None) -> str:
        tid = new_id("tok")
        with self._tx() as s:
            s.add(TokenRow(id=tid, hash=token_hash, role=role.value, device_id=device_id,
                           created_ms=self.clock.now_ms(), expires_ms=expires_ms, max_uses=max_uses,
                           issued_by=issued_by))
            rows.add_audit(s, replace(audit, target=tid) if audit else None)
        return tid

    def find_token(self, token_hash: str) -> TokenRecord | None:
        # Checked on every call and every device heartbeat: one prepared statement, no ORM objects.
        with self._core_read() as c:
            row = c.execute(_FIND_TOKEN, {"hash": token_hash}).first()
        return None if row is None else _token_record(row)

    def find_tokens(self, token_hashes: list[str]) -> dict[str, TokenRecord]:
        # The heartbeats of every session in one 20-ms batch: one statement for all their tokens.
        found: dict[str, TokenRecord] = {}
        with self._core_read() as c:
            for i in range(0, len(token_hashes), 500):
                for row in c.execute(_FIND_TOKENS, {"hashes": token_hashes[i:i + 500]}):
                    found[str(row[0])] = _token_record(row[1:])
        return found

    def list_tokens(self) -> list[TokenRecord]:
        with self._read() as s:
            found = list(s.execute(select(TokenRow).order_by(TokenRow.created_ms.desc(),  # type: ignore[attr-defined]
                                                             TokenRow.id.desc())).scalars())  # type: ignore[attr-defined]
            by_id = {r.id: r for r in found}
            names = {i: n for i, n in s.execute(select(DeviceRow.id, DeviceRow.name)).all()}
        return [rows.token(r, by_id.get(r.issued_by or ""), names.get(r.device_id or "", "")) for r in found]

    def revoke_token(self, token_id: str, now_ms: int, audit: AuditEntry | None = None) -> TokenRecord:
        with self._tx() as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise d.NotFound(f"no token with id {token_id!r}; see `labctl token list`")
            if not row.revoked_ms:
                row.revoked, row.revoked_ms = True, now_ms
                s.add(row)
            rows.add_audit(s, audit)
            return rows.token(row, None)

    def use_token(self, token_id: str, delta: int = 1) -> int:
        with self._tx() as s:
            q = update(TokenRow).where(TokenRow.id == token_id)
            if delta > 0:  # the limit is checked in the UPDATE itself: two enrolments cannot both take the last use
                q = q.where((TokenRow.max_uses == 0) | (TokenRow.uses + delta <= TokenRow.max_uses))
            done = s.execute(q.values(uses=TokenRow.uses + delta))
            row = s.get(TokenRow, token_id)
            if row is None:
                raise d.NotFound(f"no token with id {token_id!r}")
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise d.Unauthenticated(f"this token has been used {row.uses} times, its limit; ask an admin for "
                                        "a new one")
            return row.uses

    # --- devices ------------------------------------------------------------------------------------------
    def enrol_device(self, name: str, device_class: str, region: str, tags: dict[str, str],
                     capabilities: d.Capabilities, public_key: bytes, now_ms: int, *, credential_hash: str = "",
                     issued_by: str | None = None, audit: AuditEntry | None = None) -> d.Device:
        row = DeviceRow(id=new_id("dev"), name=name, device_class=device_class, region=region,
                        tags_json=json.dumps(tags, sort_keys=True),
                        capabilities_json=json.dumps(capabilities.to_dict(), sort_keys=True),
                        status="offline", last_seen_ms=now_ms, enrolled_ms=now_ms, public_key=public_key)
        try:
            with self._tx() as s:
                if s.execute(select(DeviceRow.id).where(DeviceRow.name == name)).first() is not None:
                    raise d.Conflict(f"a device named {name!r} is already enrolled; pick another --name, "
                                     "or reuse the agent's --work-dir that holds its credential")
                s.add(row)
                if credential_hash:
                    s.add(TokenRow(id=new_id("tok"), hash=credential_hash, role=d.Role.DEVICE.value, device_id=row.id,
                                   created_ms=self.clock.now_ms(), issued_by=issued_by))
                rows.add_audit(s, audit)
        except IntegrityError as e:
            raise d.Conflict(f"a device named {name!r} is already enrolled") from e
        return rows.device(row)

    def get_device(self, device_id: str) -> d.Device:
        with self._core_read() as c:  # every session, health check and listing asks: one prepared statement
            row = c.execute(_GET_DEVICE, {"id": device_id}).first()
        if row is None:
            raise d.NotFound(f"no device with id {device_id}")
        return rows.device(row)

    def get_device_by_name(self, name: str) -> d.Device:
        with self._core_read() as c:  # every submission to a named device asks: one prepared statement
            row = c.execute(_DEVICE_NAMED, {"name": name}).first()
        if row is None:
            raise d.NotFound(f"no device named {name!r} is enrolled; see `labctl devices list`")
        return rows.device(row)

    def list_devices(self) -> list[d.Device]:
        with self._read() as s:
            return [rows.device(r) for r in s.execute(select(DeviceRow).order_by(DeviceRow.name)).scalars()]

    def update_device(self, device_id: str, *, status: str, now_ms: int,
                      capabilities: d.Capabilities | None = None) -> None:
        with self._tx() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                raise d.NotFound(f"no device with id {device_id}")
            row.status = status
            row.last_seen_ms = now_ms
            if capabilities is not None:
                row.capabilities_json = json.dumps(capabilities.to_dict(), sort_keys=True)
            s.add(row)

    # --- suites and artifacts -----------------------------------------------------------------------------
    def put_suite(self, suite: d.SuiteRecord) -> None:
        with self._tx() as s:
            row = s.get(SuiteRow, (suite.id, suite.version))
            if row is not None:
                if row.digest != suite.digest:
                    raise d.Conflict(
                        f"suite {suite.id}@{suite.version} is already registered with digest {row.digest}, "
                        f"not {suite.digest}; publish the change under a new version")
                return
            s.add(SuiteRow(id=suite.id, version=suite.version, title=suite.title, digest=suite.digest,
                           suite_json=suite.suite_json))

    def get_suite(self, suite_id: str, version: str | None = None) -> d.SuiteRecord:
        with self._core_read() as c:  # every submission asks: one prepared statement
            found = c.execute(_SUITE_VERSIONS, {"id": suite_id}).all()
        if version:
            found = [r for r in found if r.version == version]
        if not found:
            at = f"@{version}" if version else ""
            raise d.NotFound(f"no suite {suite_id}{at} in this lab; see `labctl suites list`")
        row = max(found, key=lambda r: _semver_key(r.version))
        return d.SuiteRecord(id=row.id, version=row.version, title=row.title, digest=row.digest,
                             suite_json=row.suite_json)

    def list_suites(self) -> list[d.SuiteRecord]:
        with self._read() as s:
            rs = list(s.execute(select(SuiteRow)).scalars())
        rs.sort(key=lambda r: (r.id, _semver_key(r.version)))
        return [d.SuiteRecord(id=r.id, version=r.version, title=r.title, digest=r.digest,
                              suite_json=r.suite_json) for r in rs]

    def put_artifact(self, artifact: d.ArtifactRecord) -> None:
        with self._tx() as s:
            row = s.get(ArtifactRow, artifact.sha256)
            if row is None:
                s.add(ArtifactRow(sha256=artifact.sha256, size=artifact.size, name=artifact.name,
                                  kind=artifact.kind, path=artifact.path))
            elif row.path != artifact.path:
                row.path = artifact.path
                s.add(row)

    def get_artifact(self, sha256: str) -> d.ArtifactRecord:
        with self._core_read() as c:  # every assignment and finish asks: one prepared statement
            row = c.execute(_ARTIFACT, {"sha256": sha256}).first()
        if row is None:
            raise d.NotFound(f"no artifact with sha256 {sha256} in this lab")
        return d.ArtifactRecord(sha256=row.sha256, size=row.size, name=row.name, kind=row.kind, path=row.path)

    def touch_devices(self, device_ids: list[str], now_ms: int) -> None:
        if not device_ids:
            return
        with self._tx() as s:
            s.execute(update(DeviceRow).where(DeviceRow.id.in_(device_ids))  # type: ignore[attr-defined]
                      .values(last_seen_ms=now_ms, status="online"))

    def set_device_state(self, device_id: str, state: str, audit: AuditEntry | None = None) -> d.Device:
        with self._tx() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                raise d.NotFound(f"no device with id {device_id}")
            row.state = state
            if state == "active":
                row.infra_errors = 0
            s.add(row)
            rows.add_audit(s, audit)
            return rows.device(row)

    def note_outcome(self, device_id: str, infra_error: bool) -> int:
        with self._core_tx() as c:  # after every attempt: one prepared UPDATE (a success usually changes nothing)
            if not infra_error:
                c.execute(_RESET_ERRORS, {"device": device_id})
                return 0
            count = c.execute(_COUNT_ERROR, {"device": device_id}).scalar()
            return int(count or 0)

