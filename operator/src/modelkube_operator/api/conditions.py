"""status.conditions as the Kubernetes API conventions define them."""

from typing import Any, Literal

from pydantic import Field

from modelkube_operator.api.schema import ApiModel


class Condition(ApiModel):
    type: str = Field(
        description="The aspect of the resource this condition describes, e.g. Ready."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase machine-readable reason for the last transition.")
    message: str = Field(default="", description="A human-readable explanation.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this condition was computed from."
    )


CONDITIONS_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
