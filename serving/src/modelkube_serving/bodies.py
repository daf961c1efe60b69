"""Request bodies, from raw bytes to a validated model: one reader for every mode.

Local and proxy mode both read their JSON here, so an empty body, bad JSON, a lone UTF-16
surrogate or a field out of range gets the same message in both. FastAPI's own validation
errors (the fine-tuning routes) are worded by the same `validation_error`.
"""

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelkube_serving.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)
# pydantic's union-member tags in an error location ("str", "list[int]"): not field names.
_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}
# A \\uD800-\\uDFFF escape: a surrogate, paired (an emoji written escaped) or not.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def read_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says what is wrong with it."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. It is not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(raw):  # rare: walk the body only then
        where = _lone_surrogate(body, "")
        if where is not None:
            raise InvalidRequest(
                f"Invalid value at '{where}': the string holds a lone UTF-16 surrogate, "
                "which is not valid Unicode.",
                param=where or None,
            )
    return body


def parse(model: type[M], raw: bytes) -> M:
    return validate(model, read_json(raw))


def validate(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


def validation_error(errors: Any) -> InvalidRequest:
    """OpenAI's wording for the first of pydantic's (or FastAPI's) validation errors."""
    first: dict[str, Any] = next(iter(errors))
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request. It is not valid JSON."
        )
    raw_loc = [p for p in first.get("loc", ()) if p != "body"]
    if kind == "extra_forbidden" and raw_loc:
        # The unknown key itself, whatever it is called ("list" and "int" included).
        key = ".".join([*_path(raw_loc[:-1]), str(raw_loc[-1])])
        return InvalidRequest(f"Unrecognized request argument supplied: {key}", param=key)
    param = ".".join(_path(raw_loc)) or None
    if kind == "missing":
        if param is None:
            return InvalidRequest("The request body is empty; send a JSON object.")
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    where = f" at '{param}'" if param else ""
    return InvalidRequest(f"Invalid value{where}: {message}", param=param)


def _path(loc: list[Any]) -> list[str]:
    return [str(p) for p in loc if str(p) not in _TYPE_TAGS and "[" not in str(p)]


def _lone_surrogate(value: Any, where: str) -> str | None:
    """The path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(value, str):
        return where if _has_lone_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if _has_lone_surrogate(key):
                return path
            found = _lone_surrogate(item, path)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{where}.{i}" if where else str(i))
            if found is not None:
                return found
    return None


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
