"""Declarative DSPy programs a ModelService serves at /v1/programs (no pickled code)."""

from typing import Literal

from pydantic import Field

from modelkube_operator.api.schema import DATA_KEY, DNS_LABEL, ApiModel, cel


class CompiledProgramRef(ApiModel):
    name: str = Field(pattern=DNS_LABEL, max_length=253, description="The ConfigMap's name.")
    key: str = Field(
        pattern=DATA_KEY,
        max_length=253,
        description="The key holding the program JSON that `modelkube optimize` writes.",
    )


class Program(ApiModel):
    name: str = Field(
        pattern=DNS_LABEL, max_length=63, description="Run with POST /v1/programs/<name>."
    )
    signature: str = Field(
        min_length=4,
        max_length=2048,
        json_schema_extra=cel(
            (
                "self.split('->').size() == 2 && self.split('->')[0].trim() != '' && "
                "self.split('->')[1].trim() != ''",
                "must be 'inputs -> outputs', e.g. 'question -> answer'",
            )
        ),
        description="DSPy's signature, e.g. 'question -> answer' or 'text: str -> label: str'.",
    )
    module: Literal["predict", "chain_of_thought"] = Field(
        default="predict", description="The DSPy module that runs the signature."
    )
    instructions: str | None = Field(
        default=None,
        max_length=65536,
        description="The prompt's instructions; they win over the compiled program's.",
    )
    compiled_ref: CompiledProgramRef | None = Field(
        default=None,
        description="A ConfigMap key holding a compiled program (its instructions and demos); "
        "edits reach the runtime without a restart.",
    )
