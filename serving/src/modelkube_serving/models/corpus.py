"""The text the built-in tokenizer is trained on.

It is generated, not downloaded, so a model is reproducible offline: the same
seed always yields the same corpus, tokenizer and weights.
"""

import random

_SUBJECTS = (
    "the operator",
    "a platform team",
    "the runtime",
    "the scheduler",
    "a model service",
    "the cluster",
    "an engineer",
    "the batch",
    "a fine-tune",
    "the cache",
    "the queue",
    "a request",
    "the server",
    "a tokenizer",
    "the controller",
    "Prometheus",
    "Grafana",
)
_VERBS = (
    "serves",
    "reconciles",
    "watches",
    "schedules",
    "streams",
    "caches",
    "measures",
    "trains",
    "restarts",
    "scales",
    "answers",
    "rejects",
    "queues",
    "loads",
    "exports",
)
_OBJECTS = (
    "tokens",
    "the deployment",
    "every replica",
    "a chat completion",
    "the adapter",
    "its metrics",
    "the prompt",
    "new requests",
    "the weights",
    "a secret",
    "the pods",
    "a language model",
    "the dashboard",
    "an error",
    "the readiness probe",
    "the logs",
)
_TAILS = (
    "quickly.",
    "on two cores.",
    "without a restart.",
    "before the deadline.",
    "with continuous batching.",
    "in Kubernetes.",
    "as JSON.",
    "under load.",
    "for every key.",
    "and nothing is lost.",
    "when it is ready.",
    "at 64 clients.",
)
_EXTRA = (
    "Hello! How can I help you today?",
    "Sure, here is the answer.",
    "Thank you.",
    "What is the capital of France? Paris.",
    "1 2 3 4 5 6 7 8 9 10",
    "yes no maybe",
    "def main():\n    return 0\n",
    '{"key": "value", "n": 42}',
    "Ünïcödé — ok ✓ 日本語",
)


_SYLLABLES = (
    "ka",
    "to",
    "ren",
    "mi",
    "sol",
    "ve",
    "dar",
    "lin",
    "po",
    "que",
    "ast",
    "ber",
    "cu",
    "fen",
    "gal",
    "hu",
    "ir",
    "jo",
    "lum",
    "nor",
    "os",
    "pra",
    "ri",
    "sen",
    "tal",
    "ur",
)


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    """Many distinct word-like strings, so BPE has enough merges to fill its vocab."""
    return ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(count)]


def build_corpus(seed: int, sentences: int) -> list[str]:
    rng = random.Random(seed)
    words = _pseudo_words(rng, 6000)
    lines = list(_EXTRA)
    for _ in range(sentences):
        parts = (rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS))
        sentence = " ".join(parts) + " " + rng.choice(_TAILS)
        lines.append(sentence[0].upper() + sentence[1:])
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + ".")
    return lines
