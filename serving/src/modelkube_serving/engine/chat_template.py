"""What a model's chat template can render."""

import logging
from typing import Any

import jinja2
import jinja2.meta

log = logging.getLogger(__name__)


def template_takes_tools(tokenizer: Any) -> bool:
    """Whether the chat template reads a `tools` variable (Qwen's, Hermes', Llama 3.1's do;
    SmolLM2's and the built-in tiny model's do not)."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return False
    try:
        names = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(template))
    except jinja2.TemplateError:
        log.warning("the chat template does not parse; tools go through the fallback prompt")
        return False
    return "tools" in names
