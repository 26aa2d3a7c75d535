"""Hypothesis strategies for hostile input: strings with control characters, line breaks, odd unicode and huge
lengths; boundary and random numbers; and protobuf messages of any type built from its descriptor, every field
random (unknown enum values, many repeated entries, big maps), with per-field hints that steer some values towards
what the lab knows (a real run id, a suite id, a role) so the handlers get past their first check."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

SearchStrategy = st.SearchStrategy

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
HOSTILE = [
    "", " ", "\x00", "\t", "a\nb", "a\r\nb", "x\ry", "\u2028", "\x85", "\x1b[31mred\x1b[0m", "\x7f", "\ufffd",
    "../../../etc/passwd", "/etc/passwd", "C:\\Windows\\system32", "'; DROP TABLE runs; --", '" OR 1=1 --',
    "%s%s%n", "{0}{__class__}", "${HOME}", "$(id)", "`id`", "\u202eevil", "\ufeff", "\U0001f4a9", "\U0001d552",
    "ǅ", "İ", "ß", "null", "None", "NaN", "-1", "0", "9" * 30, "1e999", "*", "%", "_", "..", ".", "-",
    "run-", "tok-", "dev-", "plt_admin_", "Bearer", "smoke", "1.0.0", "0.0.0", "CPUExecutionProvider",
]
BIG = ["A" * 10_000, "\x00" * 4096, "é" * 50_000, "a\n" * 5_000, "class=robot and " * 2_000, "\U0001f4a9" * 20_000]

text_any = st.text(max_size=40)  # every code point a protobuf string can carry (no surrogates)
text_ctrl = st.text(st.characters(min_codepoint=0, max_codepoint=0xA0), max_size=24)
hostile_text: SearchStrategy[str] = st.one_of(
    st.sampled_from(HOSTILE), text_any, text_ctrl, st.sampled_from(BIG),
    st.tuples(st.sampled_from(HOSTILE), st.sampled_from(LINE_BREAKS), text_any).map("".join),
)
hostile_bytes: SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 32, b"\xff" * 64, b"\x00" * 100_000]))


def _ints(lo: int, hi: int) -> SearchStrategy[int]:
    edges = sorted(e for e in {lo, hi, lo // 2, hi // 2, -1, 0, 1, 2**31 - 1, -(2**31), 2**53 + 1} if lo <= e <= hi)
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi), st.integers(max(lo, -1000), min(hi, 1000)))


_SCALARS: dict[int, SearchStrategy[Any]] = {
    FieldDescriptor.CPPTYPE_INT32: _ints(-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: _ints(-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: _ints(0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: _ints(0, 2**64 - 1),
    FieldDescriptor.CPPTYPE_DOUBLE: st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 1e308, 5e-324, 0.5, 1.0])),
    FieldDescriptor.CPPTYPE_FLOAT: st.floats(width=32),
    FieldDescriptor.CPPTYPE_BOOL: st.booleans(),
}

Hints = Mapping[str, SearchStrategy[Any]]


def _scalar(f: FieldDescriptor) -> SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_BYTES:
        return hostile_bytes
    if f.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return hostile_text
    if f.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), _ints(-(2**31), 2**31 - 1))
    return _SCALARS[f.cpp_type]


def _many(elem: SearchStrategy[Any]) -> SearchStrategy[list[Any]]:
    """A repeated field with a few random entries, or one entry repeated thousands of times."""
    return st.one_of(st.lists(elem, max_size=4),
                     st.tuples(elem, st.integers(100, 5_000)).map(lambda p: [p[0]] * p[1]))


def _field(f: FieldDescriptor, hints: Hints, depth: int) -> SearchStrategy[Any]:
    hint = hints.get(f.name)
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        key = _scalar(f.message_type.fields_by_name["key"])
        value = _field(f.message_type.fields_by_name["value"], hints, depth + 1)
        many = st.integers(33, 400).map(lambda n: {f"k{i}": "v" for i in range(n)})
        return st.one_of(st.dictionaries(key, value, max_size=4), many)
    if f.message_type is not None:
        elem: SearchStrategy[Any] = message(f.message_type, hints, depth + 1)
    else:
        elem = _scalar(f)
    if hint is not None:
        elem = st.one_of(hint, elem)
    return _many(elem) if f.is_repeated else elem


def message(desc: Descriptor, hints: Hints | None = None, depth: int = 0) -> SearchStrategy[Message]:
    """Messages of type `desc`: each field unset or random (hints[field name] mixed in where given)."""
    cls = GetMessageClass(desc)
    if depth > 3:
        return st.just(cls())
    fields = {f.name: _field(f, hints or {}, depth) for f in desc.fields}
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: build(cls, values))


def build(cls: Callable[[], Message], values: Mapping[str, Any]) -> Message:
    m = cls()
    for name, v in values.items():
        f = m.DESCRIPTOR.fields_by_name[name]
        target = getattr(m, name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            if f.message_type.fields_by_name["value"].message_type is not None:
                for k, item in v.items():
                    target[k].CopyFrom(item)
            else:
                target.update(v)
        elif f.is_repeated:
            target.extend(v)
        elif f.message_type is not None:
            target.CopyFrom(v)
        else:
            setattr(m, name, v)
    return m


def one_line(text: str) -> bool:
    """True when text would print as one line (no line break of any kind)."""
    return not any(c in LINE_BREAKS for c in text)
