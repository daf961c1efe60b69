"""Adapters as users name them: `--adapter NAME=URI`, the watched adapters file, the config.

Pure parsing and checks, no MLX: the format is mlx-lm's (`adapter_config.json` with
`fine_tune_type`, `num_layers`, `lora_parameters` beside `adapters.safetensors`).
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A DNS label, like the Kubernetes names the operator derives adapters from.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
FINE_TUNE_TYPES = ("lora", "dora", "full")

Fingerprint = tuple[tuple[str, int, int], ...]


class AdapterSpecError(ValueError):
    """A bad adapter name, flag, file or config; the message is one line for the user."""


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    uri: str


def check_name(name: str) -> str:
    if len(name) > 63 or not _NAME.match(name):
        raise AdapterSpecError(
            f"adapter name {name!r} is not a DNS label (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return name


def parse_adapter_arg(text: str) -> AdapterSpec:
    """`NAME=URI`, as given to `modelkube serve --adapter`."""
    name, sep, uri = text.partition("=")
    if not sep or not uri:
        raise AdapterSpecError(f"expected NAME=URI, got {text!r}")
    return AdapterSpec(check_name(name), uri)


def parse_adapters_file(text: str) -> tuple[list[AdapterSpec], list[str]]:
    """`{"adapters": [{"name": ..., "uri": ...}]}`: the valid entries, and why others were
    skipped. A file that is not of that shape at all raises."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AdapterSpecError(f"not valid JSON: {exc}") from exc
    entries = document.get("adapters") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise AdapterSpecError('expected {"adapters": [{"name": ..., "uri": ...}, ...]}')
    specs: dict[str, AdapterSpec] = {}
    problems: list[str] = []
    for entry in entries:
        try:
            spec = _entry(entry)
        except AdapterSpecError as exc:
            problems.append(str(exc))
            continue
        if spec.name in specs:
            problems.append(f"adapter {spec.name!r} is listed twice; the last entry wins")
        specs[spec.name] = spec
    return list(specs.values()), problems


def _entry(entry: Any) -> AdapterSpec:
    if not isinstance(entry, dict):
        raise AdapterSpecError(f"an entry is not an object: {entry!r}")
    name, uri = entry.get("name"), entry.get("uri")
    if not isinstance(name, str) or not isinstance(uri, str) or not uri:
        raise AdapterSpecError(f"an entry needs a string name and uri: {entry!r}")
    return AdapterSpec(check_name(name), uri)


@dataclass(frozen=True)
class AdapterConfig:
    fine_tune_type: str
    num_layers: int
    lora_parameters: dict[str, Any]


def read_adapter_config(path: Path) -> AdapterConfig:
    """The checks mlx-lm leaves to a KeyError or AttributeError deep in loading."""
    try:
        config = json.loads((path / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AdapterSpecError(f"cannot read {path / 'adapter_config.json'}: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterSpecError("adapter_config.json is not a JSON object")
    kind = config.get("fine_tune_type", "lora")  # mlx-lm's default
    if kind not in FINE_TUNE_TYPES:
        raise AdapterSpecError(f"fine_tune_type {kind!r} is not one of {FINE_TUNE_TYPES}")
    layers = config.get("num_layers")
    params = config.get("lora_parameters") or {}
    if kind != "full":
        if not isinstance(layers, int) or isinstance(layers, bool):
            raise AdapterSpecError("adapter_config.json needs an integer num_layers")
        missing = [k for k in ("rank", "scale", "dropout") if k not in params]
        if missing:
            raise AdapterSpecError(f"lora_parameters lacks {', '.join(missing)}")
    return AdapterConfig(kind, layers if isinstance(layers, int) else 0, dict(params))


def fingerprint(path: Path) -> Fingerprint:
    """Sizes and modification times of the adapter's files: a failed load is retried once
    they change (a fine-tune that was still writing, or a fixed upload)."""
    stats = []
    for name in ("adapter_config.json", "adapters.safetensors", "manifest.json"):
        try:
            st = (path / name).stat()
        except OSError:
            continue
        stats.append((name, st.st_size, st.st_mtime_ns))
    return tuple(stats)
