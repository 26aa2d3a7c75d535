"""The one rule for device names, regions and tags (pilotlab/names.py), applied at enrolment; and labd's message
limits matching the agent's."""

from __future__ import annotations

import pytest

from agents.lab_client import CHANNEL_OPTIONS
from labd.handlers import agents
from labd.server import SERVER_OPTIONS
from pilotlab import domain as d
from pilotlab.names import MAX_TAGS, check_device
from tests.labd.conftest import Parts

HINT = "use letters, digits, '.', '_' or '-' (at most 64), starting with a letter or digit"


@pytest.mark.parametrize(("name", "region", "tags"), [
    ("dev1", "", {}), ("eu-kiosk", "eu-west", {"site": "lab2"}), ("bench-1", "cn-gd", {"make": "Acme"}),
    ("orin_1.lab", "us-east", {"serial": "SN-1", "pool": "x", "note": "rack 2, shelf 3"}), ("9" * 64, "eu", {}),
    ("r1", "", {f"k{i}": "" for i in range(MAX_TAGS)}), ("r1", "", {"k": "é" * 128}),
])
def test_names_the_agent_and_tests_use_are_accepted(name: str, region: str, tags: dict[str, str]) -> None:
    check_device(name, region, tags)


@pytest.mark.parametrize(("name", "region", "tags", "why"), [
    ("a b", "", {}, f"device name 'a b' has a space; {HINT}"),
    ("a/b", "", {}, f"device name 'a/b' has the character '/'; {HINT}"),
    ("a\nb", "", {}, f"device name 'a\\nb' has the control character '\\n'; {HINT}"),
    ("-a", "", {}, f"device name '-a' starts with '-'; {HINT}"),
    ("kiosk-ü", "", {}, f"device name 'kiosk-ü' has the character 'ü'; {HINT}"),
    ("x" * 65, "", {}, f"device name 'xxxxxxxxxxxxxxxxxxxx...' is 65 characters long; {HINT}"),
    ("r1", "eu west", {}, f"region 'eu west' has a space; {HINT}, or leave --region out"),
    ("r1", "", {"": "v"}, f"tag key is empty; {HINT}"),
    ("r1", "", {"si te": "v"}, f"tag key 'si te' has a space; {HINT}"),
    ("r1", "", {"site": "a\x1b[2J"}, "tag 'site' has a value with the control character '\\x1b'; use at most 128 "
                                     "printable characters"),
    ("r1", "", {"site": "v" * 129}, "tag 'site' has a value 129 characters long; use at most 128"),
    ("r1", "", {f"k{i}": "" for i in range(MAX_TAGS + 1)},
     "the device has 33 tags; at most 32 are allowed, drop some --tag"),
])
def test_enrol_refuses_bad_names_with_one_line_that_says_what_to_do(parts: Parts, name: str, region: str,
                                                                    tags: dict[str, str], why: str) -> None:
    with pytest.raises(d.Invalid) as e:
        agents.enrol(parts.store, parts.clock, name, "robot", region, tags, d.Capabilities(), b"")
    assert str(e.value) == why and "\n" not in str(e.value)
    assert parts.store.list_devices() == []


def test_the_agent_sends_no_more_than_labd_receives_and_receives_what_labd_sends() -> None:
    server, channel = dict(SERVER_OPTIONS), dict(CHANNEL_OPTIONS)
    assert server["grpc.max_receive_message_length"] == channel["grpc.max_send_message_length"] == 8 << 20
    assert server["grpc.max_send_message_length"] == channel["grpc.max_receive_message_length"] == 16 << 20
