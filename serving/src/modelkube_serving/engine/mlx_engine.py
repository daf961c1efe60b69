"""The MLX engine: continuous batching on mlx-lm's BatchGenerator, on the engine thread.

The base model and every adapter loaded on it are variants served side by side by one
EngineLoop on this thread (see threaded.py for the thread and its commands).
"""

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.generate import BatchGenerator
from modelkube_native import OutputPath, Vocabulary

from modelkube_serving.engine.batch_loop import BatchLoop
from modelkube_serving.engine.chat_template import template_takes_tools
from modelkube_serving.engine.loading import context_length, load_model, vocab_size
from modelkube_serving.engine.prompt_cache import PromptCache
from modelkube_serving.engine.threaded import ThreadedEngine
from modelkube_serving.engine.variants import build_variant
from modelkube_serving.metrics import RuntimeMetrics


@dataclass(frozen=True)
class EngineSettings:
    max_batch_size: int = 32
    prefill_batch_size: int = 8
    prefix_cache_entries: int = 64
    prefix_cache_bytes: int = 1 << 30


class MLXEngine(ThreadedEngine):
    kind = "mlx"

    def __init__(
        self, model_path: Path, model_name: str, settings: EngineSettings, metrics: RuntimeMetrics
    ) -> None:
        super().__init__(model_path, model_name)
        self.context_length = context_length(model_path)
        self.vocab_size = vocab_size(model_path)
        self._settings = settings
        self._metrics = metrics
        self._base: Any = None
        self._vocabulary: Vocabulary | None = None
        self._caches: list[weakref.ref[PromptCache]] = []  # each live variant's

    def prefix_cache_usage(self) -> float:
        """The live variants' prefix caches: their bytes over their budget, 0..1. Read from any
        thread: the list is replaced, never changed in place, and the native index locks its
        own count; a released variant's cache drops out as it is freed."""
        caches = [cache for ref in self._caches if (cache := ref()) is not None]
        budget = self._settings.prefix_cache_bytes * len(caches)
        return min(1.0, sum(c.nbytes for c in caches) / budget) if budget else 0.0

    # -- the engine thread -------------------------------------------------------------
    def _release_thread(self) -> None:
        # MLX keeps each thread's streams and compile cache in C++ thread-locals; left to the
        # thread's exit, their destructors free Python objects without the GIL, and the
        # process aborts (SIGABRT) at random, often as it exits after a drain. MLX asks each
        # worker thread to clear them itself (ml-explore/mlx#4373).
        mx.clear_streams()

    def _load(self) -> BatchLoop:
        self._base, self._tokenizer = load_model(self._path)
        self._vocabulary = Vocabulary(str(self._path / "tokenizer.json"))
        self._grammars = self._grammar_compiler()
        self.template_tools = template_takes_tools(self._tokenizer)
        return self._make_loop(self._base, self.model_name)

    def _make_variant(self, adapter: str, path: Path) -> BatchLoop:
        model = build_variant(self._base, self._path, path)
        return self._make_loop(model, f"{self.model_name}:{adapter}")

    def _make_loop(self, model: Any, name: str) -> BatchLoop:
        """A variant's own generator, prefix cache and output path."""
        assert self._vocabulary is not None
        generator = BatchGenerator(
            model,
            stop_tokens=[[t] for t in self._tokenizer.eos_token_ids],
            completion_batch_size=self._settings.max_batch_size,
            prefill_batch_size=min(
                self._settings.prefill_batch_size, self._settings.max_batch_size
            ),
        )
        prefix_cache = PromptCache(
            max_entries=self._settings.prefix_cache_entries,
            max_bytes=self._settings.prefix_cache_bytes,
        )
        live = [ref for ref in self._caches if ref() is not None]
        self._caches = [*live, weakref.ref(prefix_cache)]
        output = OutputPath(self._vocabulary)
        eos = min(self._tokenizer.eos_token_ids)
        return BatchLoop(
            generator, prefix_cache, output, self._metrics, name, self._deliver, eos_token=eos
        )
