"""DSPy modules built from declarative program specs: what the runtime serves and optimize compiles.

Kept apart from the service so that `modelkube optimize` runs without the runtime's engine.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from modelkube_serving.programs.spec import ProgramSpec, ProgramSpecError, read_programs_file


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
    try:
        signature = dspy.Signature(spec.signature, spec.instructions or "")
    except Exception as exc:  # DSPy parses the string with Python's own parser: any error
        raise ProgramSpecError(f"program {spec.name}: bad signature: {exc}") from exc
    module = (
        dspy.ChainOfThought(signature)
        if spec.module == "chain_of_thought"
        else dspy.Predict(signature)
    )
    for predictor in module.predictors():
        predictor.demos = [dspy.Example(**demo) for demo in spec.demos]
    return Program(spec, module)


def build_all(specs: tuple[ProgramSpec, ...], source: str = "programs") -> dict[str, Program]:
    try:
        return {spec.name: build(spec) for spec in specs}
    except ProgramSpecError as exc:
        raise ProgramSpecError(f"{source}: {exc}") from exc


def load_programs(path: Path) -> tuple[ProgramSpec, ...]:
    """The programs `serve` starts with: none if the file is missing, ProgramSpecError if bad."""
    specs = read_programs_file(path) or ()
    build_all(specs, str(path))
    return specs
