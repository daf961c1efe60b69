"""Running declarative DSPy programs on the runtime's own engine, in-process.

Each program becomes a DSPy module (`Predict` or `ChainOfThought`) with its instructions and
demos. A call runs it with our engine-backed LM, so its requests batch with ordinary traffic.
It runs with DSPy's JSON adapter, which sends the signature's schema as `response_format`: on
a local model, constrained decoding makes the answer parse, whatever the weights. In proxy
mode the provider decides, and output that does not parse into the signature's fields becomes
a 422 `unparsable_output` with the raw text.

The programs file is polled four times a second and compared by content (like the adapters
file), so a ConfigMap that Kubernetes updates by a symlink swap is seen like any edit. A reload
swaps the whole set at once; a call already running finishes on the module it started with. A
file that does not parse or build keeps the programs served before, with one error line.
"""

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from pydantic import TypeAdapter, ValidationError

from modelkube_serving.errors import InvalidRequest, NotFound, Unprocessable
from modelkube_serving.programs.backend import ChatBackend
from modelkube_serving.programs.lm import runtime_lm
from modelkube_serving.programs.modules import build_all
from modelkube_serving.programs.spec import ProgramSpec, ProgramSpecError, parse_programs
from modelkube_serving.programs.structured import adapter

log = logging.getLogger("modelkube.programs")
# Room for a chain of thought and its answer; a model that ignores the fields stops here.
PROGRAM_MAX_TOKENS = 512


class ProgramService:
    def __init__(
        self,
        specs: tuple[ProgramSpec, ...],
        backend: ChatBackend,
        file: Path | None = None,
        poll_s: float = 0.25,
    ) -> None:
        self.programs = build_all(specs)
        self._specs = specs
        self._backend = backend
        self._lm: Any = None
        self._file = file
        self._poll_s = poll_s
        self._file_text: str | None = None

    def reload(self, specs: tuple[ProgramSpec, ...]) -> None:
        """Serve `specs` instead, all or nothing (ProgramSpecError leaves the old set)."""
        if specs == self._specs:
            return
        before = self.programs
        # One assignment: a lookup sees the old set or the new one, never half of each.
        self.programs = build_all(specs, str(self._file))
        self._specs = specs
        added = sorted(self.programs.keys() - before.keys())
        removed = sorted(before.keys() - self.programs.keys())
        log.info(
            "programs file %s: now serving %s (added %s, removed %s)",
            self._file,
            sorted(self.programs) or "none",
            added or "none",
            removed or "none",
        )

    async def watch(self) -> None:
        """Follow the programs file (if there is one) until cancelled."""
        while self._file is not None:
            try:
                await self.poll()
            except Exception:  # the next poll tries again; the programs served stay
                log.exception("programs file %s: reloading failed", self._file)
            await asyncio.sleep(self._poll_s)

    async def poll(self) -> None:
        assert self._file is not None
        try:
            text: str | None = await asyncio.to_thread(self._file.read_text)
        except FileNotFoundError:
            text = None  # not there (any more): no programs from it
        except OSError as exc:
            text = f"unreadable: {exc}"
            if text != self._file_text:
                log.error("programs file %s: cannot read it: %s", self._file, exc)
            self._file_text = text
            return
        if text == self._file_text:
            return
        self._file_text = text
        try:
            self.reload(parse_programs(text, str(self._file)) if text is not None else ())
        except ProgramSpecError as exc:
            log.error("%s; keeping the programs served before", exc)

    def cards(self) -> list[dict[str, Any]]:
        return [self.programs[name].card() for name in sorted(self.programs)]

    async def run(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        program = self.programs.get(name)
        if program is None:
            raise NotFound(f"The program `{name}` does not exist.", param="name")
        fields = program.module.predictors()[0].signature.input_fields
        wanted = list(fields)
        missing = [field for field in wanted if field not in inputs]
        unknown = [field for field in inputs if field not in wanted]
        if missing or unknown:
            problem = f"missing {missing}" if missing else f"unknown {unknown}"
            raise InvalidRequest(
                f"Program `{name}` takes inputs {wanted}: {problem}.", param="inputs"
            )
        values = {field: _input_value(name, field, fields[field].annotation, inputs[field])
                  for field in wanted}  # fmt: skip
        with dspy.context(lm=self._runtime_lm(), adapter=adapter(), track_usage=True):
            try:
                result = await program.module.acall(**values)
            except AdapterParseError as exc:
                raise Unprocessable(
                    f"The model's output does not fit program `{name}`'s fields "
                    f"{list(exc.signature.output_fields)}: {exc.lm_response!r}",
                    param=None,
                    code="unparsable_output",
                ) from exc
        outputs = dict(result.toDict())
        return {
            "object": "program.result",
            "program": name,
            "outputs": outputs,
            "usage": _usage(result.get_lm_usage() or {}),
        }

    def _runtime_lm(self) -> Any:
        if self._lm is None:
            # Greedy, as `modelkube optimize` calls the model. The answer is constrained to
            # the signature's bounded schema (programs.structured), so it ends by itself; the
            # token bound is for a proxied provider, which decides on its own.
            self._lm = runtime_lm(
                self._backend,
                asyncio.get_running_loop(),
                temperature=0.0,
                max_tokens=PROGRAM_MAX_TOKENS,
            )
        return self._lm


def _input_value(program: str, field: str, annotation: Any, value: Any) -> Any:
    """The value as the signature types the field (text unless it says otherwise): a number, a
    list or null where text is wanted is a 400 naming the field, not a failure in DSPy's
    prompt formatting."""
    try:
        return _type_adapter(annotation).validate_python(value)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise InvalidRequest(
            f"Invalid value at 'inputs.{field}': {message} (program `{program}`).",
            param=f"inputs.{field}",
        ) from None


@functools.cache
def _type_adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _usage(by_lm: dict[str, Any]) -> dict[str, int]:
    prompt = sum(int(u.get("prompt_tokens") or 0) for u in by_lm.values())
    completion = sum(int(u.get("completion_tokens") or 0) for u in by_lm.values())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
