"""What goes wrong finding or preparing a model: one line for the user, no traceback."""


class ModelSourceError(Exception):
    """The model cannot be found, fetched or converted; the message is one line for the user."""


class UnsupportedModelError(ModelSourceError):
    """The model file is readable but of a kind we cannot serve (an architecture, a tokenizer)."""
