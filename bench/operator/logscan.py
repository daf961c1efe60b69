"""What an operator's log says: tracebacks, ERROR/WARNING lines, the API requests it made.

Lines look like `2026-01-01 12:00:00,000 INFO httpx: HTTP Request: PATCH https://... "HTTP/1.1
201 Created"`; httpx logs every request of the operator's own client (kopf's are not logged).
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_LEVEL = re.compile(r"^\S+ \S+ (ERROR|WARNING|CRITICAL) ")
_REQUEST = re.compile(r'HTTP Request: (\w+) https?://[^/\s]+([^?\s"]+)\S* "HTTP/[\d.]+ (\d{3})')
_NAMESPACED = re.compile(r"/namespaces/[^/]+/([^/]+)/[^/]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NAME = re.compile(r"\b(ms-\d+|bench-\d+)\b")
_NUMBER = re.compile(r"\d+")
_SUSPECT = ("409", "422", "429", "500", "503", "504")


@dataclass
class LogFindings:
    lines: int = 0
    tracebacks: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)  # normalized WARNING/ERROR lines
    exceptions: Counter[str] = field(default_factory=Counter)  # last line of each traceback
    requests: Counter[str] = field(default_factory=Counter)  # "PATCH .../configmaps/NAME 201"
    statuses: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "tracebacks": self.tracebacks,
            "levels": dict(self.levels),
            "statuses": dict(self.statuses),
            "requests": dict(self.requests.most_common()),
            "top_messages": self.messages.most_common(8),
            "top_exceptions": self.exceptions.most_common(8),
        }


def _normalize(line: str) -> str:
    text = line.split(" ", 3)[-1]  # drop date and time
    text = _NUMBER.sub("N", _NAME.sub("NAME", _UUID.sub("UUID", text)))
    return text.strip()[:160]


def _request(line: str, found: LogFindings) -> None:
    match = _REQUEST.search(line)
    if match:
        method, path, status = match.groups()
        path = _NAMESPACED.sub(r"/namespaces/NS/\1/NAME", path)
        found.requests[f"{method} {path} {status}"] += 1
        found.statuses[status] += 1


def _line(line: str, found: LogFindings, in_traceback: bool) -> bool:
    """Count one line; return whether a traceback continues past it."""
    found.lines += 1
    if line.startswith("Traceback"):
        found.tracebacks += 1
        return True
    if in_traceback and line and not line.startswith((" ", "\t", "During", "The above")):
        found.exceptions[line.strip()[:160]] += 1
        return False
    level = _LEVEL.match(line)
    if level:
        found.levels[level.group(1)] += 1
        found.messages[_normalize(line)] += 1
    _request(line, found)
    return in_traceback


def scan(path: Path) -> LogFindings:
    found = LogFindings()
    if path.exists():
        in_traceback = False
        for line in path.read_text(errors="replace").splitlines():
            in_traceback = _line(line, found, in_traceback)
    return found


def findings_text(name: str, path: Path, found: LogFindings) -> str:
    suspect = {code: found.statuses[code] for code in _SUSPECT if found.statuses[code]}
    head = (
        f"{name}: {path} ({found.lines} lines): {found.tracebacks} tracebacks, "
        f"levels {dict(found.levels)}, HTTP statuses {dict(found.statuses)}, "
        f"409/422/429/5xx: {suspect or 'none'}"
    )
    details = [f"    {n}x {m}" for m, n in found.messages.most_common(5)]
    details += [f"    {n}x exception: {m}" for m, n in found.exceptions.most_common(5)]
    details += [f"    {n}x request: {r}" for r, n in found.requests.most_common(10)]
    return "\n".join([head, *details])
