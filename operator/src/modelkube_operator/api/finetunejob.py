"""FineTuneJob: an mlx-lm LoRA/DoRA/full fine-tune run as a Kubernetes Job."""

from typing import Literal

from pydantic import Field

from modelkube_operator.api.conditions import CONDITIONS_EXTRA, Condition
from modelkube_operator.api.modelservice import MODEL_URI_PATTERN
from modelkube_operator.api.pods import DNS_SUBDOMAIN, PodSettings
from modelkube_operator.api.schema import DATA_KEY, NO_PARENT, PVC_URI, ApiModel, cel

DECIMAL = r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
DEFAULT_ACTIVE_DEADLINE_SECONDS = 7 * 24 * 3600
DEFAULT_TTL_SECONDS_AFTER_FINISHED = 24 * 3600


class BaseModelSource(ApiModel):
    uri: str = Field(
        pattern=MODEL_URI_PATTERN,
        max_length=512,
        json_schema_extra=cel(NO_PARENT),
        description="The model to adapt: builtin://name, hf://org/name[@revision] or "
        "pvc://claim/path.",
    )


class ConfigMapKeySelector(ApiModel):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="The ConfigMap's name.")
    key: str = Field(
        pattern=DATA_KEY,
        max_length=253,
        description="The key holding JSONL data (a ConfigMap key: letters, digits, '-', '_' "
        "and '.', not starting with '..').",
    )


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
        default=None,
        pattern=PVC_URI,
        max_length=512,
        json_schema_extra=cel(NO_PARENT),
        description="JSONL data on a PVC: pvc://claim/path.",
    )


class Hyperparameters(ApiModel):
    iterations: int = Field(default=100, ge=1, le=1000000, description="Training iterations.")
    learning_rate: str = Field(
        default="1e-5",
        pattern=DECIMAL,
        max_length=32,
        json_schema_extra=cel(
            (f"!self.matches(r'{DECIMAL}') || double(self) > 0.0", "must be greater than 0")
        ),
        description="Learning rate, as a positive decimal string, e.g. '1e-5'.",
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
        pattern=PVC_URI,
        max_length=512,
        json_schema_extra=cel(NO_PARENT),
        description="Where the adapter is written: pvc://claim/path.",
    )


class Trainer(PodSettings):
    active_deadline_seconds: int = Field(
        default=DEFAULT_ACTIVE_DEADLINE_SECONDS,
        ge=60,
        le=30 * 24 * 3600,
        description="The longest the training Job may run before it fails (a week by default).",
    )
    backoff_limit: int = Field(
        default=2,
        ge=0,
        le=100,
        description="How many times a failed training pod is started again (each retry resumes "
        "from the last checkpoint) before the FineTuneJob fails; exit code 2, bad data or "
        "arguments, is never retried.",
    )
    ttl_seconds_after_finished: int = Field(
        default=DEFAULT_TTL_SECONDS_AFTER_FINISHED,
        ge=0,
        le=365 * 24 * 3600,
        description="How long the ended Job and its pod (and their logs) stay, a day by default; "
        "the FineTuneJob and its status stay, and it does not train again.",
    )


# A Job's pod template cannot change once made, and a run half done on other settings would
# mix two trainings: like a Job, a FineTuneJob takes only `suspend` as an edit.
IMMUTABLE_SPEC_MESSAGE = (
    "spec is immutable except suspend: delete the FineTuneJob and create it again to train "
    "with other settings"
)
_FIELDS = ("baseModel", "dataset", "method", "hyperparameters", "output", "trainer")


class FineTuneJobSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                " && ".join(
                    f"(has(self.{f}) == has(oldSelf.{f})) && "
                    f"(!has(self.{f}) || self.{f} == oldSelf.{f})"
                    for f in _FIELDS
                ),
                IMMUTABLE_SPEC_MESSAGE,
            ),
        )
    }
    base_model: BaseModelSource = Field(description="The model to fine-tune.")
    dataset: Dataset = Field(description="Training data (chat, completions or text JSONL).")
    method: Literal["lora", "dora", "full"] = Field(
        default="lora", description="lora, dora or full."
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Training hyperparameters."
    )
    output: Output = Field(description="Where the trained adapter goes.")
    trainer: Trainer = Field(
        default_factory=Trainer,
        description="The training pod: image, resources, env, scheduling, deadline.",
    )
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
