"""Fuzzing every RPC of AgentService, ArtifactService and LabService on one real labd (127.0.0.1, port 0, a real
channel): requests of random field values built from the message descriptors (control characters, huge strings,
unicode, negative and huge numbers, unknown enum values, thousands of repeated entries), raw bytes that do not decode,
messages over the size limit, each with no token, a bad or revoked token, or a token of every role. Every call must
end with an expected status (never UNKNOWN or INTERNAL, never a hang) and a one-line reason, labd must log no
traceback, and after it all the lab still serves and what it stored before is unchanged."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from evalsuites import builtin_suites_dir
from pilotlab.v1 import agent_pb2, lab_pb2
from tests.fuzz.conftest import FuzzedLab, fuzz_settings
from tests.fuzz.strategies import BIG, hostile_bytes, message
from tests.fuzz.wire import (
    METHODS,
    ROLES,
    TIMEOUT_S,
    DeviceSession,
    Outcome,
    Seeded,
    bearer,
    call,
    enrol,
    request_class,
    seed,
    submit,
)

SUITE_IDS = sorted(p.parent.name for p in builtin_suites_dir().glob("*/suite.toml"))
_ascii = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
# Authorization values a client can send (gRPC metadata is printable ASCII), from none to hostile.
bad_tokens: SearchStrategy[list[tuple[str, str]]] = st.one_of(
    st.just([]),
    st.text(_ascii, max_size=80).map(lambda t: [("authorization", t)]),
    st.text(_ascii, max_size=80).map(lambda t: [("authorization", f"Bearer {t}")]),
    st.sampled_from(["Bearer", "Bearer ", "bearer plt_admin_x", "BEARER  plt_x ", "Basic YWRtaW46YWRtaW4=",
                     "plt_admin_" + "A" * 43, "x" * 4000]).map(lambda t: [("authorization", t)]),
    st.just([("authorization", "Bearer a"), ("authorization", "Bearer b")]),
    st.just([("x-token", "plt_admin_x")]),
)


# Who calls: mostly the role the RPC is for, so that requests reach the handlers; sometimes anyone, or no one.
ROLE_OF = {"Enrol": "agent", "Stat": "device", "Get": "device", "CreateToken": "admin", "RevokeToken": "admin",
           "ListTokens": "admin", "SetDeviceState": "admin", "ListAudit": "admin", "SubmitRun": "engineer",
           "CancelRun": "engineer", "GetReport": "engineer"}


def _callers(name: str) -> list[str]:
    return [ROLE_OF.get(name, "certifier")] * 6 + [*ROLES, "bad"]


def _good(s: Seeded, name: str) -> Any:
    """A request of the method that the lab would accept (the base that near-valid requests vary)."""
    cls = request_class(METHODS[name])
    fields: dict[str, Any] = {
        "CreateToken": {"role": "engineer"}, "RevokeToken": {"id": s.spare_token_ids[0]}, "GetSuite": {"id": "smoke"},
        "SubmitRun": {"suite_id": "smoke", "device": "target-dev"}, "GetRun": {"id": s.finished_run},
        "WatchRun": {"id": s.finished_run}, "GetReport": {"run_id": s.finished_run},
        "CancelRun": {"id": s.finished_run}, "ListRuns": {"limit": 5},
        "SetDeviceState": {"name": "target-dev", "state": "draining"},
        "Enrol": {"name": "fuzz-new", "device_class": "smart-terminal"},
        "Stat": {"sha256": s.sha256s[0]}, "Get": {"sha256": s.sha256s[0], "chunk_size": 1000},
    }.get(name, {})
    return cls(**fields)


def _near(good: Any, varied: Any) -> Any:
    """good with the fields that varied sets (to a non-default value) replaced or, when repeated, extended."""
    out = type(good)()
    out.CopyFrom(good)
    out.MergeFrom(varied)
    return out


@pytest.fixture(scope="module")
def lab(fuzz_lab: FuzzedLab) -> Iterator[Seeded]:
    """The seeded lab, with fuzz-dev connected and running an attempt (so artifact calls get past the zone check)."""
    s = seed(fuzz_lab)
    dev = DeviceSession(s.channel, s.tokens["device"])
    submit(s, "fuzz-dev")
    dev.assignment()
    s.lab.new_log()
    yield s
    dev.close()


def _hints(s: Seeded, name: str) -> dict[str, SearchStrategy[Any]]:
    """Values the lab knows, per request field, so that some calls get past the first check; never the ids of what
    the snapshot holds where a call could legitimately change it (the queued run, the kept tokens, keep-dev)."""
    runs = [s.finished_run, s.queued_run, "run-000000000000", s.finished_run.upper()]
    text: dict[str, SearchStrategy[Any]] = {
        "suite_id": st.sampled_from(SUITE_IDS), "suite_version": st.sampled_from(["1.0.0", "", "9.9.9"]),
        "version": st.sampled_from(["1.0.0", "", "1.0"]),
        "device": st.sampled_from(["target-dev", "fuzz-dev", "keep-dev", "no-such-dev"]),
        "select": st.sampled_from(["class=robot", "name=target-dev", "cpu_cores contains 1", "memory_gb >= 0",
                                   "class=smart-terminal and region=eu", "tag.site=fuzz", "name=fuzz-dev"]),
        "role": st.sampled_from(["agent", "engineer", "certifier", "admin", "device", "ADMIN", " admin"]),
        "state": st.sampled_from(["active", "draining", "quarantined", "offline"]),
        "sha256": st.sampled_from([*s.sha256s, *(h.upper() for h in s.sha256s), "0" * 64]),
        "device_class": st.sampled_from(["smart-terminal", "robot", "accelerator-board", "toaster"]),
        "region": st.sampled_from(["eu", "", "cn-gd", "*"]),
        "amend_reason": st.sampled_from(["", "a correction"]),
    }
    by_method: dict[str, dict[str, SearchStrategy[Any]]] = {
        "GetRun": {"id": st.sampled_from(runs)},
        "WatchRun": {"id": st.sampled_from(runs)},
        "CancelRun": {"id": st.sampled_from([s.finished_run, "run-000000000000"])},
        "GetReport": {"run_id": st.sampled_from(runs)},
        "RevokeToken": {"id": st.sampled_from(s.spare_token_ids)},
        "GetSuite": {"id": st.sampled_from(SUITE_IDS)},
        "SetDeviceState": {"name": st.sampled_from(["target-dev", "no-such-dev"])},
        "Enrol": {"name": st.one_of(st.sampled_from(["keep-dev", "fuzz-dev"]),
                                    st.from_regex(r"[a-z][a-z0-9._-]{0,20}", fullmatch=True))},
        "SubmitRun": {"device": st.sampled_from(["target-dev", "fuzz-dev", "no-such-dev"])},
    }
    return {**text, **by_method.get(name, {})}


@pytest.mark.parametrize("name", sorted(METHODS))
@fuzz_settings(30)
@given(data=st.data())
def test_rpc_with_random_requests(lab: Seeded, name: str, data: st.DataObject) -> None:
    lab.lab.new_log()
    m = METHODS[name]
    random = message(m.input_type, _hints(lab, name))
    request = data.draw(st.one_of(random, random.map(lambda r: _near(_good(lab, name), r))), label="request")
    who = data.draw(st.sampled_from(_callers(name)), label="caller")
    metadata = data.draw(bad_tokens, label="metadata") if who == "bad" else bearer(lab.tokens[who])
    outcome = call(lab.channel, m, request, metadata)
    event(outcome.code.name)  # `--hypothesis-show-statistics` shows how far the calls got
    what = (name, str(request)[:300], metadata[:1])
    outcome.check(what)
    lab.lab.assert_log_clean(what)


@pytest.mark.parametrize("name", sorted(METHODS))
@fuzz_settings(16)
@given(data=st.data())
def test_rpc_with_raw_bytes(lab: Seeded, name: str, data: st.DataObject) -> None:
    """Bytes as the serialized request: most do not decode as the request type (INVALID_ARGUMENT, see
    test_undecodable_request_is_invalid_argument), the rest must be handled like any request."""
    lab.lab.new_log()
    m = METHODS[name]
    raw = data.draw(st.one_of(hostile_bytes, st.binary(min_size=1, max_size=200)), label="bytes")
    role = data.draw(st.sampled_from(ROLES), label="role")
    try:
        request = request_class(m).FromString(raw)
    except Exception:  # noqa: BLE001 - any decoding failure: INVALID_ARGUMENT, see test_undecodable_request_...
        request = None
    outcome = call(lab.channel, m, raw, bearer(lab.tokens[role]))
    event(f"{outcome.code.name}, {'decodes' if request is not None else 'does not decode'}")
    if request is None:
        assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
        lab.lab.assert_log_clean((name, raw[:100]))
        return
    outcome.check((name, raw[:100]))
    lab.lab.assert_log_clean((name, raw[:100]))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_rpc_with_oversized_request(lab: Seeded, name: str) -> None:
    """A request over labd's 8 MiB receive limit is refused with RESOURCE_EXHAUSTED before any handler sees it."""
    m = METHODS[name]
    raw = b"\x9a\x3f" + _varint(9 << 20) + b"\x00" * (9 << 20)  # field 1000, length-delimited: unknown, 9 MiB
    outcome = call(lab.channel, m, raw, bearer(lab.tokens["admin"]))
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    lab.lab.assert_log_clean((name, "9 MiB"))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@fuzz_settings(25)
@given(metadata=bad_tokens, name=st.sampled_from(sorted(METHODS)))
def test_rpc_refuses_bad_tokens(lab: Seeded, metadata: list[tuple[str, str]], name: str) -> None:
    """Without a token the lab knows, every RPC answers UNAUTHENTICATED (an empty request, so nothing else fails)."""
    lab.lab.new_log()
    outcome = call(lab.channel, METHODS[name], request_class(METHODS[name])(), metadata)
    assert outcome.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED), outcome
    outcome.check((name, metadata))
    lab.lab.assert_log_clean((name, metadata))


@fuzz_settings(10)
@given(name=st.sampled_from(["GetRun", "CancelRun", "GetSuite", "RevokeToken", "SetDeviceState", "SubmitRun",
                             "GetReport", "WatchRun"]),
       text=st.sampled_from(BIG))
@example(name="SubmitRun", text=BIG[4])
def test_rpc_with_huge_strings(lab: Seeded, name: str, text: str) -> None:
    """Every string field at once set to tens of kilobytes of text (a selector too), with an admin token."""
    lab.lab.new_log()
    m = METHODS[name]
    request = request_class(m)()
    for f in m.input_type.fields:
        if f.type == f.TYPE_STRING:
            setattr(request, f.name, text)
    started = time.monotonic()
    outcome = call(lab.channel, m, request, bearer(lab.tokens["admin"]))
    outcome.check((name, len(text)))
    assert time.monotonic() - started < 5, f"{name} took {time.monotonic() - started:.1f}s on {len(text)} characters"
    lab.lab.assert_log_clean((name, len(text)))


# --- bugs the fuzzing found, each kept as a case ---------------------------------------------------------------------
def test_token_expiry_out_of_range_is_invalid_argument(lab: Seeded) -> None:
    outcome = call(lab.channel, METHODS["CreateToken"], lab_pb2.CreateTokenRequest(role="engineer", expires_in_s=2**62),
                   bearer(lab.tokens["admin"]))
    lab.lab.new_log()
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome


@pytest.mark.parametrize("timeout", [math.inf, math.nan, 1e300])
def test_queue_timeout_out_of_range_is_invalid_argument(lab: Seeded, timeout: float) -> None:
    outcome = call(lab.channel, METHODS["SubmitRun"],
                   lab_pb2.SubmitRunRequest(suite_id="smoke", device="target-dev", queue_timeout_s=timeout),
                   bearer(lab.tokens["engineer"]))
    lab.lab.new_log()
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome


def test_negative_chunk_size_is_invalid_argument_or_the_default(lab: Seeded) -> None:
    outcome = call(lab.channel, METHODS["Get"], request_class(METHODS["Get"])(sha256=lab.sha256s[0], chunk_size=-2),
                   bearer(lab.tokens["device"]))
    lab.lab.new_log()
    assert outcome.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK), outcome


@pytest.mark.parametrize("name", ["GetRun", "WatchRun", "Enrol", "Session"])
def test_undecodable_request_is_invalid_argument(lab: Seeded, name: str) -> None:
    garbage = b"\xff\xff\xff\xff"
    if name == "Session":  # the one client stream: a device's first message
        m = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods_by_name["Session"]
        stream = lab.channel.stream_stream(f"/{m.containing_service.full_name}/{m.name}")
        credential = enrol(lab, f"raw-dev-{time.monotonic_ns()}")
        try:
            list(stream(iter([garbage]), metadata=bearer(credential), timeout=TIMEOUT_S))
            outcome = Outcome(grpc.StatusCode.OK, "")
        except grpc.RpcError as e:
            outcome = Outcome(e.code(), e.details() or "")
    else:
        outcome = call(lab.channel, METHODS[name], garbage, bearer(lab.tokens["admin"]))
    lab.lab.new_log()
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome


def test_lab_still_serves_and_kept_what_it_stored(lab: Seeded) -> None:
    """Last in this module: after all the fuzzing above, the lab serves and what it stored before is unchanged."""
    lab.assert_intact()
