"""`make demo`, part 4: a LoRA fine-tune teaches the real model a task, measured before and after.

The task (tests/finetune/tag_task.py): "Tag: <word>" is answered "[[<word>]]". The base
model, builtin://smollm2-135m-instruct, answers none of the held-out prompts that way;
`modelkube finetune` trains a LoRA adapter on 160 rows, the running runtime picks it up from
its adapters file (as the operator hands a FineTuneJob to a ModelService), and the adapter
answers the held-out prompts, whose words it never saw. The base model still answers as before.
"""

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from examples.demo import REAL_MODEL, URL, say, serve, wait_ready
from tests.finetune import tag_task

SERVED = REAL_MODEL.removeprefix("builtin://")


def train(adapter: Path) -> float:
    h = tag_task.HYPERPARAMETERS
    args = ["--base", REAL_MODEL, "--data", str(tag_task.TRAIN), "--output", str(adapter),
            "--iterations", str(h["iterations"]), "--learning-rate", str(h["learningRate"]),
            "--num-layers", str(h["numLayers"]), "--rank", str(h["rank"])]  # fmt: skip
    say(f"modelkube finetune {' '.join(args)}")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "modelkube_serving", "finetune", *args], check=True)
    return time.monotonic() - started


def measure(client: openai.OpenAI, model: str) -> list[str]:
    prompts, expected = zip(*tag_task.held_out(), strict=True)
    replies = tag_task.answers(client, model, list(prompts))
    for prompt, reply in list(zip(prompts, replies, strict=True))[:3]:
        print(f"  {prompt!r} -> {reply!r}")
    accuracy = tag_task.exact_match(replies, list(expected))
    print(f"{model}: exact match on {len(prompts)} held-out prompts: {accuracy:.0%}")
    return replies


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="modelkube-demo-"))
    adapter = work / "adapters" / "tag"
    seconds = train(adapter)
    manifest = json.loads((adapter / "manifest.json").read_text())
    print(f"trained in {seconds:.0f} s; final losses {manifest['finalLosses']}")

    adapters_file = work / "adapters.json"
    adapters_file.write_text('{"adapters": []}\n')
    proc = serve(REAL_MODEL, "--adapters-file", str(adapters_file))
    try:
        wait_ready(proc, timeout=300)
        client = openai.OpenAI(base_url=f"{URL}/v1", api_key="not-needed")
        say(f"before: the base model on the held-out prompts ({tag_task.HELD_OUT.name})")
        before = measure(client, SERVED)

        say("the adapter is handed over: adapters.json now lists it (the server keeps running)")
        adapters_file.write_text(json.dumps({"adapters": [{"name": "tag", "uri": str(adapter)}]}))
        deadline = time.monotonic() + 120
        while f"{SERVED}:tag" not in [m.id for m in client.models.list().data]:
            if time.monotonic() > deadline:
                sys.exit("demo: the adapter was not loaded within 120 s")
            time.sleep(0.2)
        say("after: the adapter on the same prompts")
        measure(client, f"{SERVED}:tag")
        same = tag_task.answers(client, SERVED, [p for p, _ in tag_task.held_out()]) == before
        print(f"the base model answers as before: {same}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


if __name__ == "__main__":
    main()
