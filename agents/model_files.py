"""Refuse an ONNX model whose tensors keep external data outside its artifact set, read without the onnx package."""

from __future__ import annotations

import mmap
import re
from collections.abc import Collection, Iterator
from pathlib import Path

# The messages walked, and which of their fields embed which message (field numbers from onnx/onnx.proto).
_MODEL, _TRAINING, _FUNCTION, _GRAPH, _NODE, _ATTRIBUTE, _SPARSE, _TENSOR = range(8)
_EMBEDS: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},  # graph, training_info, functions
    _TRAINING: {1: _GRAPH, 2: _GRAPH},  # initialization, algorithm
    _FUNCTION: {7: _NODE, 11: _ATTRIBUTE},  # node, attribute_proto (default values)
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},  # node, initializer, sparse_initializer
    _NODE: {5: _ATTRIBUTE},  # attribute
    # t, g, tensors, graphs, sparse_tensor, sparse_tensors
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},  # values, indices
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1
_SEPARATORS = re.compile(r"[\\/]")
_DRIVE = re.compile(r"[A-Za-z]:")


class ExternalDataRefused(ValueError):
    """A model tensor keeps its data outside the model's artifact set."""


def _invalid(detail: str) -> ValueError:
    return ValueError(f"the model file is not a valid ONNX protobuf: {detail}")


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 70:
        if pos >= end:
            raise _invalid(f"a varint runs past the end of its message at byte {end}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _invalid(f"a varint longer than 10 bytes ends at byte {pos}")


def _fields(buf: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, 0 or end) of each varint and length-delimited field; skips fixed."""
    while pos < end:
        at = pos
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _invalid(f"field number 0 at byte {at}")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value, 0
            continue
        if wire == 2:
            size, pos = _varint(buf, pos, end)
            start, pos = pos, pos + size
            if pos > end:
                raise _invalid(f"field {field} at byte {at} is {size} bytes long, past its message's end at byte {end}")
            yield field, wire, start, pos
            continue
        if wire not in (1, 5):
            raise _invalid(f"field {field} at byte {at} has wire type {wire}, which ONNX never writes")
        pos += 8 if wire == 1 else 4
        if pos > end:
            raise _invalid(f"fixed-width field {field} at byte {at} runs past its message's end at byte {end}")


def _text(buf: memoryview, start: int, end: int) -> str:
    return str(buf[start:end], "utf-8", "backslashreplace")


def _tensor(buf: memoryview, start: int, end: int) -> list[tuple[str, str]]:
    name, external = "", False
    locations: list[str] = []
    for field, wire, a, b in _fields(buf, start, end):
        if field == _TENSOR_NAME and wire == 2:
            name = _text(buf, a, b)
        elif field == _TENSOR_DATA_LOCATION and wire == 0:
            external = a == _EXTERNAL
        elif field == _TENSOR_EXTERNAL_DATA and wire == 2:
            entry = {key: _text(buf, c, d) for key, kind, c, d in _fields(buf, a, b) if key in (1, 2) and kind == 2}
            if entry.get(1) == "location":
                locations.append(entry.get(2, ""))
    if external and not locations:
        locations.append("")  # EXTERNAL without a location: refused as an empty location
    return [(name, location) for location in locations]


def _walk(buf: memoryview) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    stack = [(_MODEL, 0, len(buf))]  # a stack, not recursion: nesting depth is up to the file
    while stack:
        kind, start, end = stack.pop()
        if kind == _TENSOR:
            found += _tensor(buf, start, end)
            continue
        embeds = _EMBEDS[kind]
        inner = [(embeds[f], a, b) for f, wire, a, b in _fields(buf, start, end) if wire == 2 and f in embeds]
        stack += reversed(inner)  # walked in file order
    return found


def external_data(path: Path) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor of the model at `path` that keeps its data in another file."""
    with path.open("rb") as f:
        if f.seek(0, 2) == 0:
            return []
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as buf:
            return _walk(buf)


def _normal(location: str) -> str:
    return "/".join(part for part in _SEPARATORS.split(location) if part not in ("", "."))


def _refusal(location: str, allowed: set[str] | None) -> str | None:
    if not location:
        return "an empty location"
    if "\0" in location:
        return "a location with a NUL byte"
    if location.startswith(("/", "\\")) or _DRIVE.match(location):
        return "an absolute path"
    # '..' climbs out; Windows also drops trailing dots and spaces, so '...' and '.. ' climb there too.
    if any(part.strip(" .") == "" and part not in ("", ".") for part in _SEPARATORS.split(location)):
        return "a path that climbs out of the model's directory with '..'"
    if allowed is not None and _normal(location) not in allowed:
        return f"not a file of the model's artifact set ({', '.join(sorted(allowed)) or 'none'})"
    return None


def check_confined(path: Path, allowed: Collection[str] | None = None) -> list[str]:
    """The distinct external-data locations of the model at `path`, in file order; raises ExternalDataRefused for
    an absolute path, a '..' component, an empty location, or (given `allowed`) a file outside that set."""
    if isinstance(allowed, str):
        allowed = (allowed,)
    permitted = None if allowed is None else {_normal(name) for name in allowed}
    locations: list[str] = []
    for name, location in external_data(path):
        reason = _refusal(location, permitted)
        if reason is not None:
            raise ExternalDataRefused(f"model tensor {name!r} keeps its data at {location!r}, {reason}; "
                                      "external data must lie beside the model inside its artifact set")
        if location not in locations:
            locations.append(location)
    return locations
