"""Request bodies of the OpenAI files and fine-tuning jobs endpoints.

Unknown fields are rejected, as in protocol.py. File uploads are multipart/form-data, read
with the standard library's MIME parser (the one form this runtime accepts).
"""

import email.parser
import email.policy
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_SUFFIX = 60  # "ft-" + suffix is the FineTuneJob's name, a DNS label of at most 63
_DNS_LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(_Strict):
    n_epochs: Literal["auto"] | Annotated[int, Field(ge=1, le=100)] = "auto"
    batch_size: Literal["auto"] | Annotated[int, Field(ge=1, le=1024)] = "auto"
    learning_rate_multiplier: Literal["auto"] | Annotated[float, Field(gt=0.0, le=100.0)] = "auto"


class Supervised(_Strict):
    hyperparameters: Hyperparameters | None = None


class Method(_Strict):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: Supervised | None = None

    @field_validator("type")
    @classmethod
    def _only_supervised(cls, value: str) -> str:
        if value != "supervised":
            raise ValueError(f"only supervised fine-tuning is supported, not {value}")
        return value


class FineTuningJobCreate(_Strict):
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @field_validator("suffix")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if (
            not value
            or len(value) > MAX_SUFFIX
            or not set(value) <= _DNS_LABEL_CHARS
            or value[0] == "-"
            or value[-1] == "-"
        ):
            raise ValueError(
                f"suffix must be 1 to {MAX_SUFFIX} lowercase letters, digits or '-', "
                "starting and ending with a letter or digit (it names the FineTuneJob)"
            )
        return value

    @field_validator("validation_file")
    @classmethod
    def _no_validation_file(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "validation files are not supported: a tenth of training_file is held out "
                "for validation"
            )
        return value

    def effective_hyperparameters(self) -> Hyperparameters:
        """`method.supervised.hyperparameters` (OpenAI's current form) over the older field."""
        supervised = self.method.supervised if self.method is not None else None
        if supervised is not None and supervised.hyperparameters is not None:
            return supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()


class MultipartError(ValueError):
    """The upload is not a multipart form this endpoint understands; str() says why."""


@dataclass(frozen=True)
class Upload:
    filename: str
    content: bytes
    purpose: str


def parse_upload(content_type: str, body: bytes) -> Upload:
    """The `file` and `purpose` fields of a multipart/form-data body, as the SDK sends them."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("Uploads must be multipart/form-data with 'file' and 'purpose'.")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (part.get_filename(), payload)
    if "file" not in fields:
        raise MultipartError("Missing required parameter: 'file'.")
    if "purpose" not in fields:
        raise MultipartError("Missing required parameter: 'purpose'.")
    filename, content = fields["file"]
    try:
        purpose = fields["purpose"][1].decode().strip()
    except UnicodeDecodeError:
        raise MultipartError("Invalid value for 'purpose': it is not UTF-8 text.") from None
    return Upload(filename or "upload.jsonl", content, purpose)
