"""One rule for the names a device brings to the lab: its name, its region, and its tag keys and values.

A name (device name, tag key, region) is 1-64 characters of letters, digits, '.', '_' and '-', starting with a
letter or a digit; a region may also be empty. A tag value is at most 128 printable characters (spaces are
fine, control characters are not). A device carries at most 32 tags. Each refusal is one line that says what is
wrong and what to do."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pilotlab.domain import Capabilities, Invalid

NAME_MAX = 64
TAG_VALUE_MAX = 128
MAX_TAGS = 32
_NAME_HINT = f"use letters, digits, '.', '_' or '-' (at most {NAME_MAX}), starting with a letter or digit"


def _show(value: str) -> str:
    """The value quoted on one line, shortened when long."""
    return repr(value if len(value) <= 24 else value[:20] + "...")


def _describe(c: str) -> str:
    if c == " ":
        return "a space"
    if not c.isprintable():
        return f"the control character {c!r}"
    return f"the character {c!r}"


def _is_name_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in "._-")


def check_name(what: str, value: str, hint: str = _NAME_HINT) -> None:
    """Invalid unless value is a name by the rule above; `what` names it in the message ("device name")."""
    if not value:
        raise Invalid(f"{what} is empty; {hint}")
    if len(value) > NAME_MAX:
        raise Invalid(f"{what} {_show(value)} is {len(value)} characters long; {hint}")
    bad = next((c for c in value if not _is_name_char(c)), None)
    if bad is not None:
        raise Invalid(f"{what} {_show(value)} has {_describe(bad)}; {hint}")
    if not value[0].isalnum():
        raise Invalid(f"{what} {_show(value)} starts with {value[0]!r}; {hint}")


def check_region(region: str) -> None:
    """A region is empty (none given) or a name."""
    if region:
        check_name("region", region, f"{_NAME_HINT}, or leave --region out")


def check_tags(tags: Mapping[str, str]) -> None:
    """At most MAX_TAGS tags; every key a name, every value short and printable."""
    if len(tags) > MAX_TAGS:
        raise Invalid(f"the device has {len(tags)} tags; at most {MAX_TAGS} are allowed, drop some --tag")
    for key, value in tags.items():
        check_name("tag key", key)
        if len(value) > TAG_VALUE_MAX:
            raise Invalid(f"tag {key!r} has a value {len(value)} characters long; use at most {TAG_VALUE_MAX}")
        bad = next((c for c in value if not c.isprintable()), None)
        if bad is not None:
            raise Invalid(f"tag {key!r} has a value with {_describe(bad)}; use at most {TAG_VALUE_MAX} printable "
                          "characters")


LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits at
_ESCAPED = {c: repr(c)[1:-1] for c in LINE_BREAKS}


def one_line(text: str) -> str:
    """text with every line break shown escaped (a newline as \\n): a message that quotes what a caller sent, or a
    suite's own keys, stays one line however hostile they are."""
    return "".join(_ESCAPED.get(c, c) for c in text) if any(c in _ESCAPED for c in text) else text


# What a device may report about itself: far above any real device (a CPU lists about 150 features), and small
# enough that a thousand devices' listing stays well under a gRPC message's 16 MiB.
CAPABILITY_LIMITS = {"providers": (64, 128), "cpu_flags": (1024, 64), "energy_sensors": (64, 256)}
CAPABILITY_TEXT_MAX = 256
CAPABILITIES_MAX_BYTES = 64 << 10


def check_capabilities(caps: Capabilities) -> None:
    """The capabilities a device reports, bounded: so many entries, each so long, so many bytes in all."""
    for key, (most, longest) in CAPABILITY_LIMITS.items():
        items = getattr(caps, key)
        if len(items) > most:
            raise Invalid(f"capabilities.{key} lists {len(items)} entries; report at most {most}")
        for item in items:
            text = item if isinstance(item, str) else repr(item)
            if len(text) > longest:
                raise Invalid(f"capabilities.{key} has an entry {len(text)} characters long; use at most {longest}")
    for key, value in vars(caps).items():
        if isinstance(value, str) and len(value) > CAPABILITY_TEXT_MAX:
            raise Invalid(f"capabilities.{key} is {len(value)} characters long; use at most {CAPABILITY_TEXT_MAX}")
    size = len(json.dumps(caps.to_dict(), default=str))
    if size > CAPABILITIES_MAX_BYTES:
        raise Invalid(f"capabilities take {size} bytes; report at most {CAPABILITIES_MAX_BYTES}")


def check_device(name: str, region: str, tags: Mapping[str, str]) -> None:
    """Everything a device names about itself at enrolment."""
    check_name("device name", name)
    check_region(region)
    check_tags(tags)
