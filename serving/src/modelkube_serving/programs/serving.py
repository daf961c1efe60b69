"""The programs a runtime serves, behind one small interface.

A runtime started without programs and without a programs file serves none, and never imports
DSPy: its import costs seconds at every start, and it cannot load on a free-threaded CPython
(DSPy needs orjson, whose build refuses free-threaded Python and which ships no cp314t wheel).
"""

from pathlib import Path
from typing import Any, Protocol

from modelkube_serving.errors import NotFound
from modelkube_serving.programs.backend import ChatBackend
from modelkube_serving.programs.spec import ProgramSpec


class Programs(Protocol):
    def cards(self) -> list[dict[str, Any]]: ...

    async def run(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]: ...

    async def watch(self) -> None:
        """Follow the programs file, if any, until cancelled."""
        ...


class NoPrograms:
    """A runtime with no programs: an empty list, and a 404 for any name."""

    def cards(self) -> list[dict[str, Any]]:
        return []

    async def run(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        raise NotFound(f"The program `{name}` does not exist.", param="name")

    async def watch(self) -> None:
        return None


def serve_programs(
    specs: tuple[ProgramSpec, ...], backend: ChatBackend, file: Path | None
) -> Programs:
    """DSPy's ProgramService when there are programs to serve, or a file they may come from."""
    if not specs and file is None:
        return NoPrograms()
    from modelkube_serving.programs.service import ProgramService

    return ProgramService(specs, backend, file)
