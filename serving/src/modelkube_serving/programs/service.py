"""Running declarative DSPy programs on the runtime's own engine, in-process.

Each program becomes a DSPy module (`Predict` or `ChainOfThought`) with its instructions and
demos. A call runs it with our engine-backed LM, so its requests batch with ordinary traffic.
Model output that does not parse into the signature's fields becomes a 422 with the raw text:
DSPy's ChatAdapter falls back to its JSONAdapter once, and that is the one retry.
"""

import asyncio
from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from modelkube_serving.errors import InvalidRequest, NotFound, Unprocessable
from modelkube_serving.programs.lm import runtime_lm
from modelkube_serving.programs.spec import ProgramSpec
from modelkube_serving.services.completions import CompletionService


@dataclass(frozen=True)
class Program:
    spec: ProgramSpec
    module: Any

    def card(self) -> dict[str, Any]:
        signature = self.module.predictors()[0].signature
        return {
            "object": "program",
            "id": self.spec.name,
            "module": self.spec.module,
            "signature": self.spec.signature,
            "inputs": list(signature.input_fields),
            "outputs": list(signature.output_fields),
            "demos": len(self.spec.demos),
        }


def build(spec: ProgramSpec) -> Program:
    signature = dspy.Signature(spec.signature, spec.instructions or "")
    module = (
        dspy.ChainOfThought(signature)
        if spec.module == "chain_of_thought"
        else dspy.Predict(signature)
    )
    for predictor in module.predictors():
        predictor.demos = [dspy.Example(**demo) for demo in spec.demos]
    return Program(spec, module)


class ProgramService:
    def __init__(self, specs: tuple[ProgramSpec, ...], completions: CompletionService) -> None:
        self.programs = {spec.name: build(spec) for spec in specs}
        self._completions = completions
        self._lm: Any = None

    def cards(self) -> list[dict[str, Any]]:
        return [self.programs[name].card() for name in sorted(self.programs)]

    async def run(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        program = self.programs.get(name)
        if program is None:
            raise NotFound(f"The program `{name}` does not exist.", param="name")
        wanted = list(program.module.predictors()[0].signature.input_fields)
        missing = [field for field in wanted if field not in inputs]
        unknown = [field for field in inputs if field not in wanted]
        if missing or unknown:
            problem = f"missing {missing}" if missing else f"unknown {unknown}"
            raise InvalidRequest(
                f"Program `{name}` takes inputs {wanted}: {problem}.", param="inputs"
            )
        with dspy.context(lm=self._runtime_lm(), track_usage=True):
            try:
                result = await program.module.acall(**inputs)
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
            self._lm = runtime_lm(self._completions, asyncio.get_running_loop())
        return self._lm


def _usage(by_lm: dict[str, Any]) -> dict[str, int]:
    prompt = sum(int(u.get("prompt_tokens") or 0) for u in by_lm.values())
    completion = sum(int(u.get("completion_tokens") or 0) for u in by_lm.values())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
