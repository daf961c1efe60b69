"""The llama.cpp engine: a GGUF file served by llama.cpp inside the Rust core.

The model directory is the one GGUF conversion writes (models/gguf.py): its tokenizer and
chat template tokenize here, exactly as for MLX, and its `source.json` names the GGUF file
that llama.cpp loads as it is (quantized). Token ids agree because both come from the GGUF's
own vocabulary. A random-weight built-in is the other way round: its HF directory is the
source, and models/hf_gguf.py writes the GGUF file from it.
"""

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mlx_lm.utils import load_tokenizer
from modelkube_native import LlamaEngine, OutputPath, Vocabulary

from modelkube_serving.engine.chat_template import template_takes_tools
from modelkube_serving.engine.llama_backlog import Backlog
from modelkube_serving.engine.llama_loop import LlamaLoop
from modelkube_serving.engine.threaded import ThreadedEngine
from modelkube_serving.metrics import RuntimeMetrics
from modelkube_serving.models.builtin import cache_root, is_builtin_dir
from modelkube_serving.models.errors import UnsupportedModelError
from modelkube_serving.models.gguf_lora import ensure_lora_gguf
from modelkube_serving.models.hf_gguf import ensure_hf_gguf

# Tokens a request may hold by default: each of max_batch_size sequences gets its own KV cells,
# allocated up front (SmolLM2-135M: ~23 KB a token at f16, so 32 x 2048 is ~1.5 GB).
DEFAULT_CONTEXT = 2048


@dataclass(frozen=True)
class LlamaSettings:
    max_batch_size: int = 32
    context_length: int | None = None  # per request; None: DEFAULT_CONTEXT within the model's
    # Tokens one step decodes at most: prompt chunks beside the decoding rows.
    step_tokens: int = 512
    threads: int = 0  # 0: the CPUs this process may use


def gguf_source(model_path: Path) -> Path:
    """The GGUF file a converted model directory came from, or the one a random-weight
    built-in is written out as (on first use, beside it)."""
    source = model_path / "source.json"
    if not source.is_file():
        if is_builtin_dir(model_path):
            return ensure_hf_gguf(model_path)
        raise UnsupportedModelError(
            f"the llama.cpp engine serves GGUF models; {model_path} is not one (use --engine mlx)"
        )
    gguf = Path(json.loads(source.read_text())["gguf"])
    if not gguf.is_file():
        raise UnsupportedModelError(f"the GGUF file {gguf} of {model_path} is gone")
    return gguf


class LlamaCppEngine(ThreadedEngine):
    kind = "llamacpp"

    def __init__(
        self, model_path: Path, model_name: str, settings: LlamaSettings, metrics: RuntimeMetrics
    ) -> None:
        super().__init__(model_path, model_name)
        self._gguf = gguf_source(model_path)
        config = json.loads((model_path / "config.json").read_text())
        self.vocab_size = int(config["vocab_size"])
        trained = int(config.get("max_position_embeddings", DEFAULT_CONTEXT))
        self.context_length = min(trained, settings.context_length or DEFAULT_CONTEXT)
        self._settings = settings
        self._metrics = metrics
        self._config = config
        self._engine: LlamaEngine | None = None
        self._vocabulary: Vocabulary | None = None
        self._handles = itertools.count()
        self._backlog: Backlog | None = None
        # Each choice takes a sequence of its own.
        self.max_choices = settings.max_batch_size

    def prefix_cache_usage(self) -> float:
        """The KV cache's cells holding tokens over all of them: what a prefix can be reused
        from here, and what running requests hold."""
        engine = self._engine
        return engine.kv_cache_usage if engine is not None else 0.0

    def waiting_requests(self) -> int:
        """Requests waiting for free sequences (a deque's length: safe from any thread)."""
        return len(self._backlog) if self._backlog is not None else 0

    def _release_thread(self) -> None:
        """Nothing: llama.cpp keeps no per-thread state; closing the loops freed the contexts."""

    def _load(self) -> LlamaLoop:
        self._tokenizer = load_tokenizer(self._path)
        self.template_tools = template_takes_tools(self._tokenizer)
        vocabulary = Vocabulary(str(self._path / "tokenizer.json"))
        settings = self._settings
        engine = LlamaEngine(
            self._gguf,
            context_length=self.context_length,
            n_batch=settings.step_tokens,
            n_seq_max=settings.max_batch_size,
            n_threads=settings.threads or len(os.sched_getaffinity(0)),
        )
        self.vocab_size = engine.vocab_size
        self.context_length = engine.context_length
        # The masks come from the same core code as MLX's, over the converted directory's
        # tokenizer.json: written from the GGUF's own vocabulary, so its ids are llama.cpp's.
        self._grammars = self._grammar_compiler()
        self._engine, self._vocabulary = engine, vocabulary
        self._backlog = Backlog(lambda: engine.free_sequences)
        self.max_choices = engine.sequences
        return self._make_loop(0, self.model_name)

    def _make_variant(self, adapter: str, path: Path) -> LlamaLoop:
        """A LoRA adapter, converted to a GGUF LoRA (cached beside it) and loaded against the
        base model; DoRA and full fine-tunes raise, which the adapter's state reports."""
        assert self._engine is not None
        lora = ensure_lora_gguf(path, self._config, cache_root() / "adapters")
        return self._make_loop(self._engine.load_adapter(lora), f"{self.model_name}:{adapter}")

    def _make_loop(self, adapter: int, name: str) -> LlamaLoop:
        assert self._engine is not None and self._vocabulary is not None
        output = OutputPath(self._vocabulary)
        return LlamaLoop(
            self._engine,
            output,
            self._metrics,
            name,
            self._deliver,
            adapter,
            self._handles,
            self._backlog,
        )
