"""What a model's chat template can render."""

import re
from typing import Any

import jinja2
import jinja2.meta

_TOOLS_WORD = re.compile(r"\btools\b")


def template_takes_tools(tokenizer: Any) -> bool:
    """Whether the chat template reads a `tools` variable (Qwen's, Hermes', Llama 3.1's do;
    SmolLM2's and the built-in tiny model's do not)."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return False
    # Only parsed, never rendered here: autoescape changes nothing.
    env = jinja2.Environment(autoescape=True, extensions=["jinja2.ext.loopcontrols"])
    try:
        names = jinja2.meta.find_undeclared_variables(env.parse(template))
    except jinja2.TemplateError:
        # Tags of transformers' own ({% generation %}) do not parse here: read the words.
        return bool(_TOOLS_WORD.search(template))
    return "tools" in names
