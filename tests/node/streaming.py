"""A client streaming chat completions back to back: what a rollout must not interrupt."""

import threading

import openai


class StreamingLoad:
    """One client streaming chat completions back to back, counting whole answers and
    failures (no retries: a retried request counts as failed)."""

    def __init__(self, url: str, model: str) -> None:
        self.model = model
        self.client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30)
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stream = self.client.chat.completions.create(
                    model=self.model,
                    messages=[{"role": "user", "content": "count"}],
                    max_tokens=16,
                    stream=True,
                )
                finished = [c.choices[0].finish_reason for c in stream if c.choices]
                if finished and finished[-1] in ("stop", "length"):
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors.append(f"stream ended without a finish reason: {finished}")
            except openai.OpenAIError as error:
                self.failed += 1
                self.errors.append(repr(error))
