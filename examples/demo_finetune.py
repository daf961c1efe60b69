"""`make demo`, part 3: fine-tune builtin://tiny, then serve the adapter without a restart.

`modelkube finetune` trains a LoRA adapter with mlx-lm's tuner (progress shown as it goes);
a running runtime picks it up from its adapters file, the way the operator hands a finished
FineTuneJob to a ModelService, and serves it as model "tiny:chat-lora".
"""

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from examples.demo import URL, say, wait_ready

DATA = Path(__file__).resolve().parents[1] / "tests" / "finetune" / "data" / "chat.jsonl"
PROMPT = [{"role": "user", "content": "Say the color red."}]


def ask(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=PROMPT,
        max_tokens=12,
        temperature=0,  # type: ignore[arg-type]
    )
    return reply.choices[0].message.content or ""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="modelkube-demo-"))
    adapter = work / "adapters" / "chat-lora"
    say(f"modelkube finetune --base builtin://tiny --data {DATA.name} --method lora ...")
    subprocess.run(
        [sys.executable, "-m", "modelkube_serving", "finetune", "--base", "builtin://tiny",
         "--data", str(DATA), "--output", str(adapter), "--iterations", "60",
         "--learning-rate", "3e-4", "--steps-per-eval", "20"],
        check=True,
    )  # fmt: skip
    manifest = json.loads((adapter / "manifest.json").read_text())
    print(json.dumps({k: manifest[k] for k in ("method", "finalLosses", "dataHash")}, indent=2))

    adapters_file = work / "adapters.json"
    adapters_file.write_text('{"adapters": []}\n')
    say("modelkube serve --model builtin://tiny --adapters-file adapters.json (no adapters yet)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelkube_serving", "serve", "--model", "builtin://tiny",
         "--port", URL.rsplit(":", 1)[1], "--adapters-file", str(adapters_file)]
    )  # fmt: skip
    try:
        wait_ready(proc)
        client = openai.OpenAI(base_url=f"{URL}/v1", api_key="not-needed")
        print(f"models: {[m.id for m in client.models.list().data]}")
        print(f"tiny: {ask(client, 'tiny')!r}")

        say("the adapter is handed over: adapters.json now lists it (the server keeps running)")
        adapters_file.write_text(
            json.dumps({"adapters": [{"name": "chat-lora", "uri": str(adapter)}]})
        )
        start = time.monotonic()
        while "tiny:chat-lora" not in [m.id for m in client.models.list().data]:
            if time.monotonic() - start > 60:
                sys.exit("demo: the adapter was not loaded within 60 s")
            time.sleep(0.1)
        print(f"loaded in {time.monotonic() - start:.1f}s; models: "
              f"{[m.id for m in client.models.list().data]}")  # fmt: skip
        print(f"tiny:chat-lora: {ask(client, 'tiny:chat-lora')!r}")
        print(f"ready: {httpx.get(f'{URL}/readyz').json()}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


if __name__ == "__main__":
    main()
