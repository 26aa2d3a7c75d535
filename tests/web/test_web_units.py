"""The console's pure parts without a browser: its button visibility agrees with the Authenticator for every role and
rule, sessions expire and are bounded, the same-origin and next-page checks, the queue summary and the submit form."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from labd.auth import Authenticator, hash_token
from labd.state import TokenRecord
from labd.web import access
from labd.web.fleet_view import DeviceRow, rows_html
from labd.web.queue import queue_lines
from labd.web.runs import submit_options
from labd.web.session import Sessions, safe_next, same_origin
from pilotlab import domain as d

RULES = [v for k, v in vars(access).items() if k.isupper() and isinstance(v, tuple) and len(v) == 2]


@dataclass
class OneTokenStore:
    """Just enough of a Store for the Authenticator: one token of a given role."""

    role: d.Role
    token: str = "plt_x"
    calls: list[str] = field(default_factory=list)

    def find_token(self, h: str) -> TokenRecord | None:
        return TokenRecord(id="tok-1", role=self.role, device_id=None) if h == hash_token(self.token) else None


@pytest.mark.parametrize("role", list(d.Role))
def test_buttons_shown_exactly_when_the_authenticator_allows(role: d.Role) -> None:
    assert len(RULES) >= 10
    auth = Authenticator(OneTokenStore(role))  # type: ignore[arg-type]
    for roles, action in RULES:
        try:
            auth.require("plt_x", roles, action)
            allowed = True
        except d.Denied:
            allowed = False
        assert access.permitted(role, roles) == allowed, (role, action)


def test_device_and_agent_tokens_may_not_sign_in() -> None:
    for role in (d.Role.DEVICE, d.Role.AGENT):
        with pytest.raises(d.Denied, match="may not sign in to the web console"):
            Authenticator(OneTokenStore(role)).require("plt_x", *access.SIGN_IN)  # type: ignore[arg-type]


def test_sessions_expire_and_are_bounded() -> None:
    now = [0.0]
    sessions = Sessions(clock=lambda: now[0], idle_s=10, max_age_s=25, max_sessions=3)
    who = d.Principal(d.Role.ENGINEER, "tok-1")
    a = sessions.open("t", who)
    now[0] = 9
    assert sessions.get(a.id) is a  # used: idle time starts again
    now[0] = 18
    assert sessions.get(a.id) is a
    now[0] = 26
    assert sessions.get(a.id) is None  # too old, however recently used
    b = sessions.open("t", who)
    assert sessions.get(b.id) is b and sessions.get("guess") is None and sessions.get(None) is None
    others = [sessions.open("t", d.Principal(d.Role.ADMIN, "tok-2")) for _ in range(3)]
    assert sessions.get(b.id) is None and len(sessions) == 3  # the oldest went first
    assert sessions.close_token("tok-2") == 3 and all(sessions.get(s.id) is None for s in others)
    assert a.csrf != b.csrf and len(a.id) >= 40


def test_same_origin_and_next() -> None:
    assert same_origin({}, "http", "lab:8080")
    assert same_origin({"Origin": "http://lab:8080"}, "http", "lab:8080")
    assert not same_origin({"Origin": "https://lab:8080"}, "http", "lab:8080")
    assert not same_origin({"Origin": "null"}, "http", "lab:8080")
    assert same_origin({"Referer": "http://lab:8080/runs?x=1"}, "http", "lab:8080")
    assert not same_origin({"Referer": "http://evil:8080/"}, "http", "lab:8080")
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil", "", None, "runs"):
        assert safe_next(bad) == "/devices"
    assert safe_next("/runs/run-1?x=2") == "/runs/run-1?x=2"


def _dev(i: str, cls: str, **tags: str) -> d.Device:
    return d.Device(id=i, name=i, device_class=cls, region="", tags=tags, capabilities=d.Capabilities())


def _run(rid: str, status: d.Status, *tasks: tuple[str, d.Status, int]) -> d.Run:
    return d.Run(id=rid, suite_id="s", suite_version="1", suite_digest="", status=status, submitted_ms=1,
                 tasks=[d.Task(id=f"{rid}-{n}", run_id=rid, name="t", device_id=dev, device_name=dev, status=st,
                               spec=None, queued_ms=q) for n, (dev, st, q) in enumerate(tasks)])


def test_queue_per_class_and_tag() -> None:
    fleet = [_dev("a", "robot", site="x"), _dev("b", "robot", site="y"), _dev("c", "smart-terminal", site="x")]
    runs = [_run("r1", d.Status.RUNNING, ("a", d.Status.RUNNING, 5), ("b", d.Status.QUEUED, 300)),
            _run("r2", d.Status.QUEUED, ("a", d.Status.QUEUED, 200), ("c", d.Status.QUEUED, 100)),
            _run("r3", d.Status.CANCELLED, ("c", d.Status.CANCELLED, 50))]
    lines = {(x.group, x.key): (x.depth, x.oldest_ms) for x in queue_lines(runs, fleet)}
    assert lines == {("class", "robot"): (2, 200), ("class", "smart-terminal"): (1, 100),
                     ("tag", "site=x"): (2, 100), ("tag", "site=y"): (1, 300)}
    assert queue_lines([], fleet) == []


def test_submit_form() -> None:
    o = submit_options({"suite": "smoke@1.0.0", "target": "device", "device": "kiosk", "select": "class=robot"})
    assert (o.suite_id, o.version, o.device, o.select, o.any_device) == ("smoke", "1.0.0", "kiosk", "", False)
    o = submit_options({"suite": "smoke", "target": "select", "device": "kiosk", "select": "class=robot",
                        "any": "1", "priority": "5"})
    assert (o.device, o.select, o.any_device, o.priority) == ("", "class=robot", True, 5)
    for bad in ({"suite": "", "device": "x"}, {"suite": "smoke"}, {"suite": "smoke", "device": "x", "priority": "hi"}):
        with pytest.raises(d.Invalid):
            submit_options(bad)


def test_fleet_rows_are_rendered_once_while_unchanged() -> None:
    caps = d.Capabilities(os="Linux", arch="x86_64", cpu_cores=4, providers=["CPUExecutionProvider"],
                          cpu_flags=["avx2", "avx512_vnni", "sse4_2"])
    dev = d.Device(id="1", name="kiosk<1>", device_class="robot", region="eu", tags={"site": "a"},
                   capabilities=caps, status="online")
    [first] = rows_html([DeviceRow(dev)], can_manage=True)
    assert rows_html([DeviceRow(dev)], can_manage=True)[0] is first  # reused
    html = str(first)
    assert "kiosk&lt;1&gt;" in html and "<span class=\"flag\">avx512_vnni</span>" in html and "<td>CPU</td>" in html
    assert 'value="kiosk&lt;1&gt; draining"' in html and 'value="kiosk&lt;1&gt; active"' not in html
    dev.state = "draining"
    again = str(rows_html([DeviceRow(dev)], can_manage=True)[0])
    assert "b-draining" in again and 'value="kiosk&lt;1&gt; active"' in again
    assert "<button" not in str(rows_html([DeviceRow(dev)], can_manage=False)[0])
