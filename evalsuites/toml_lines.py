"""Maps dotted problem fields back to suite.toml line numbers by scanning headers and keys (best effort)."""

from __future__ import annotations

import re

_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]\s*(?:#.*)?$")
_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]\s*(?:#.*)?$")
_KEY = re.compile(rf"^\s*({_DOTTED})\s*=")
_SPLIT = re.compile(_PART)
_SYNTAX_LINE = re.compile(r"at line (\d+)")


def _parts(dotted: str) -> list[str]:
    out = []
    for m in _SPLIT.finditer(dotted):
        p = m.group(0)
        out.append(p[1:-1] if p[:1] in "\"'" else p)
    return out


def _render(path: list[str | int]) -> str:
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else p)
    return text


class LineIndex:
    """Where each table header and key of a TOML text sits, keyed by the dotted field it defines."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        counts: dict[tuple[str, ...], int] = {}
        table: list[str | int] = []
        in_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            if m := _ARRAY_HEADER.match(line):
                raw = tuple(_parts(m.group(1)))
                counts[raw] = counts.get(raw, 0) + 1
                table = self._resolve(raw, counts)
                self._lines.setdefault(_render([p for p in table if not isinstance(p, int)]), number)
                self._lines.setdefault(_render(table), number)
            elif m := _HEADER.match(line):
                table = self._resolve(tuple(_parts(m.group(1))), counts)
                self._lines.setdefault(_render(table), number)
            elif m := _KEY.match(line):
                self._lines.setdefault(_render([*table, *_parts(m.group(1))]), number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_string = quote
                    break

    @staticmethod
    def _resolve(raw: tuple[str, ...], counts: dict[tuple[str, ...], int]) -> list[str | int]:
        out: list[str | int] = []
        for i, part in enumerate(raw):
            out.append(part)
            if (n := counts.get(raw[: i + 1])) is not None:
                out.append(n - 1)
        return out

    def exact(self, field: str) -> int | None:
        """The line that defines exactly `field` (a key or table header), or None."""
        return self._lines.get(field)

    def line_for(self, field: str) -> int | None:
        """The line defining `field`, else the line of its closest enclosing table or key, else None."""
        if field in self._lines:
            return self._lines[field]
        best, best_len = None, -1
        for name, number in self._lines.items():
            if len(name) > best_len and field.startswith(name) and field[len(name)] in ".[":
                best, best_len = number, len(name)
        return best


def syntax_line(message: str) -> int | None:
    """The line number tomllib reports in a TOMLDecodeError message, if any."""
    m = _SYNTAX_LINE.search(message)
    return int(m.group(1)) if m else None
