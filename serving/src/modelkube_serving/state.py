"""What the routes find on `app.state.runtime`: the common part, and one class per mode."""

from dataclasses import dataclass

from modelkube_serving.engine.types import Engine
from modelkube_serving.metrics import RuntimeMetrics
from modelkube_serving.services.adapters import AdapterManager
from modelkube_serving.services.admission import Admission
from modelkube_serving.services.completions import CompletionService
from modelkube_serving.services.proxy import ProxyService


@dataclass(kw_only=True)
class ServingState:
    """What every mode has: admission, metrics, keys, and whether it is draining."""

    model_name: str
    admission: Admission
    metrics: RuntimeMetrics
    api_keys: tuple[bytes, ...]
    draining: bool = False

    def loading(self) -> bool:
        """Still getting ready to serve (the model loading, adapters settling)."""
        return False

    def alive(self) -> bool:
        """Able to serve again some day; False means only a restart helps."""
        return True


@dataclass(kw_only=True)
class RuntimeState(ServingState):
    """Serving a local model on an engine (MLX or llama.cpp)."""

    engine: Engine
    service: CompletionService
    adapters: AdapterManager

    def loading(self) -> bool:
        return not self.engine.ready or not self.adapters.settled

    def alive(self) -> bool:
        return self.engine.alive


@dataclass(kw_only=True)
class ProxyState(ServingState):
    """Serving a hosted provider's model (proxy mode)."""

    proxy: ProxyService
