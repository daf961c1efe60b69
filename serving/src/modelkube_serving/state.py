"""What the routes find on `app.state.runtime`."""

from dataclasses import dataclass

from modelkube_serving.engine.mlx_engine import MLXEngine
from modelkube_serving.metrics import RuntimeMetrics
from modelkube_serving.services.adapters import AdapterManager
from modelkube_serving.services.admission import Admission
from modelkube_serving.services.completions import CompletionService


@dataclass
class RuntimeState:
    engine: MLXEngine
    service: CompletionService
    admission: Admission
    metrics: RuntimeMetrics
    api_keys: tuple[bytes, ...]
    adapters: AdapterManager
    draining: bool = False
