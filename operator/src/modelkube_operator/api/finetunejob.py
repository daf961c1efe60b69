"""FineTuneJob: an mlx-lm LoRA/DoRA/full fine-tune run as a Kubernetes Job."""

from typing import Literal

from pydantic import Field

from modelkube_operator.api.conditions import CONDITIONS_EXTRA, Condition
from modelkube_operator.api.modelservice import MODEL_URI_PATTERN
from modelkube_operator.api.schema import DNS_LABEL, ApiModel, cel

DECIMAL = r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"


class BaseModelSource(ApiModel):
    uri: str = Field(pattern=MODEL_URI_PATTERN, max_length=512, description="The model to adapt.")


class ConfigMapKeySelector(ApiModel):
    name: str = Field(pattern=DNS_LABEL, max_length=253, description="The ConfigMap's name.")
    key: str = Field(min_length=1, max_length=253, description="The key holding JSONL data.")


class Dataset(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            ("has(self.configMapRef) != has(self.uri)", "set exactly one of configMapRef or uri"),
        )
    }
    config_map_ref: ConfigMapKeySelector | None = Field(
        default=None, description="JSONL training data in a ConfigMap key."
    )
    uri: str | None = Field(
        default=None, pattern=r"^pvc://.+", max_length=512, description="JSONL data on a PVC."
    )


class Hyperparameters(ApiModel):
    iterations: int = Field(default=100, ge=1, le=1000000, description="Training iterations.")
    learning_rate: str = Field(
        default="1e-5", pattern=DECIMAL, description="Learning rate, as a decimal string."
    )
    batch_size: int = Field(default=4, ge=1, le=1024, description="Examples per iteration.")
    num_layers: int | None = Field(
        default=None,
        ge=-1,
        le=1024,
        description="Layers to adapt, from the last (default: 16, or all if fewer; -1: all).",
    )
    rank: int = Field(default=8, ge=1, le=1024, description="LoRA rank.")
    seed: int = Field(default=0, ge=0, description="Random seed.")


class Output(ApiModel):
    uri: str = Field(
        pattern=r"^pvc://.+", max_length=512, description="Where the adapter is written."
    )


class FineTuneJobSpec(ApiModel):
    base_model: BaseModelSource = Field(description="The model to fine-tune.")
    dataset: Dataset = Field(description="Training data (chat, completions or text JSONL).")
    method: Literal["lora", "dora", "full"] = Field(
        default="lora", description="lora, dora or full."
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Training hyperparameters."
    )
    output: Output = Field(description="Where the trained adapter goes.")
    suspend: bool = Field(
        default=False,
        description=(
            "Stop training (the Job's pod is stopped); set back to false to resume from the "
            "last checkpoint. The fine-tuning API's cancel sets it."
        ),
    )


class Progress(ApiModel):
    iteration: int = Field(default=0, description="Iterations done.")
    total_iterations: int = Field(default=0, description="Iterations planned.")
    percent: int = Field(default=0, description="Iterations done, in percent.")
    train_loss: str = Field(default="", description="Latest training loss.")
    validation_loss: str = Field(default="", description="Latest validation loss.")
    eta_seconds: int = Field(default=0, description="Estimated seconds left.")
    iterations_per_second: str = Field(default="", description="Recent training speed.")
    update_time: str = Field(default="", description="When the trainer last reported (RFC 3339).")


class FineTuneJobStatus(ApiModel):
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_EXTRA,
        description="Running, Succeeded, Failed.",
    )
    progress: Progress = Field(default_factory=Progress, description="Training progress.")
    adapter_uri: str = Field(
        default="", alias="adapterURI", description="The trained adapter, once succeeded."
    )
    start_time: str = Field(default="", description="When training started (RFC 3339).")
    completion_time: str = Field(default="", description="When training ended (RFC 3339).")
    observed_generation: int = Field(default=0, description="The generation last reconciled.")
