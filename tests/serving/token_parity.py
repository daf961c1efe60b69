"""Token ids llama.cpp gives builtin://smollm2-135m-instruct's GGUF file: the parity fixture.

The ids in data/smollm2_token_ids.json come from llama.cpp's own tokenizer
(`llama-tokenize`, which matches special tokens inside the text, as mlx-lm's tokenizer
does). Regenerate them with llama.cpp built from the llama-cpp-python sdist:

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
    tar xzf llama_cpp_python-0.3.36.tar.gz && cd llama_cpp_python-0.3.36/vendor/llama.cpp
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \\
        -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \\
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF
    ninja -C build llama-tokenize
    uv run python -m tests.serving.token_parity build/bin/llama-tokenize
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

FIXTURE = Path(__file__).parent / "data" / "smollm2_token_ids.json"
LLAMA_CPP = "llama-cpp-python 0.3.36 (sdist), llama-tokenize"

TEXTS = [
    "Hello, world!",
    "The café's naïve façade: crème brûlée, Ångström, Œuvre, ß, İstanbul.",
    "日本語のテキストと中文文本，还有한국어 문장。",  # noqa: RUF001
    "Emoji: 🎉🚀👩‍💻 and flags 🇫🇷🇯🇵, skin tones 👍🏽.",
    "Digits 0 12 345 6789 3.14159 1,000,000 and 2024-12-04T03:00Z",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\tprint(fib(10))",
    "Special tokens inside text: <|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "   leading spaces, trailing spaces   \n\n\nnewlines\r\nand CRLF",
    "Mixed: Привет мир! Γειά σου κόσμε! مرحبا بالعالم! שלום עולם!",  # noqa: RUF001
    "URLs https://example.com/a?b=c&d=e#f and e-mails name@example.org",
    "<repo_name>modelkube<file_sep>README.md\n# Title",
    "'s 're 've 'll 'd 't 'm don't I'M WE'RE",
]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Où est la tour Eiffel ? 🗼"},
        {"role": "assistant", "content": "À Paris."},
        {"role": "user", "content": "Et le Mont-Saint-Michel ?"},
    ],
]


def rendered_chats(model_dir: Path) -> list[str]:
    """The chats as the model's chat template renders them, generation prompt added."""
    from mlx_lm.tokenizer_utils import load

    tokenizer = load(model_dir)
    return [
        str(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))
        for chat in CHATS
    ]


def llama_cpp_ids(llama_tokenize: Path, gguf: Path, text: str) -> list[int]:
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as f:
        f.write(text)
        f.flush()
        out = subprocess.run(
            [
                str(llama_tokenize),
                "-m",
                str(gguf),
                "--file",
                f.name,
                "--no-escape",
                "--ids",
                "--log-disable",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    ids: list[int] = json.loads(out.strip().splitlines()[-1])
    return ids


def regenerate(llama_tokenize: Path) -> None:
    from modelkube_serving.models.gguf import content_hash
    from modelkube_serving.models.packaged import packaged_gguf
    from modelkube_serving.models.uri import resolve_model

    gguf = packaged_gguf("smollm2-135m-instruct")
    texts = TEXTS + rendered_chats(resolve_model("builtin://smollm2-135m-instruct"))
    cases = [{"text": t, "ids": llama_cpp_ids(llama_tokenize, gguf, t)} for t in texts]
    head = {"reference": LLAMA_CPP, "gguf_sha256": content_hash(gguf)}
    lines = ",\n".join(json.dumps(case, ensure_ascii=False) for case in cases)
    FIXTURE.parent.mkdir(exist_ok=True)
    # One case a line, so a regenerated fixture diffs case by case.
    FIXTURE.write_text(json.dumps(head)[:-1] + ', "cases": [\n' + lines + "\n]}\n")
    print(f"wrote {len(cases)} cases to {FIXTURE}")


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]))
