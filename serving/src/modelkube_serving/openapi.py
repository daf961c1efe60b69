"""The runtime's `/openapi.json`, made to say what the server really does.

FastAPI's document is generated from the routes, and ours read their bodies themselves (so both
modes validate alike): this adds the request bodies, the SSE answer, OpenAI's error body at
the statuses the runtime answers with (400 where FastAPI would say 422), and the Prometheus
text format of `/metrics`.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from modelkube_serving.protocol import ChatCompletionRequest, CompletionRequest
from modelkube_serving.routes.programs import ProgramRequest

_REF = "#/components/schemas/{model}"
_BODIES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/programs/{name}": ProgramRequest,
}
_STREAMED = {"/v1/chat/completions", "/v1/completions"}
_ERRORS = {
    "400": "The request is invalid: the message and `param` say what to change.",
    "401": "A missing or wrong API key.",
    "404": "No such model (or adapter).",
    "413": "The body is over the size limit.",
    "429": "The queue is full or a rate limit is hit; see Retry-After.",
    "503": "The model is loading or the server is draining; see Retry-After.",
    "504": "The request waited in the queue past its deadline.",
}
_ERROR_BODY = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_SSE = {
    "text/event-stream": {
        "schema": {"type": "string", "description": "`data: <chunk JSON>` events, then `[DONE]`"}
    }
}


def install_openapi(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(
                get_openapi(title=app.title, version=app.version, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def openapi_document(doc: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document, corrected (pure: returns a new document)."""
    schemas: dict[str, Any] = dict(doc.get("components", {}).get("schemas", {}))
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorResponse"] = _ERROR_BODY
    paths: dict[str, Any] = {}
    for path, operations in doc.get("paths", {}).items():
        paths[path] = {
            method: _operation(path, method, op, schemas) for method, op in operations.items()
        }
    return {**doc, "paths": paths, "components": {**doc.get("components", {}), "schemas": schemas}}


def _operation(path: str, method: str, op: dict[str, Any], schemas: dict[str, Any]) -> Any:
    op = dict(op)
    responses: dict[str, Any] = {k: v for k, v in op.get("responses", {}).items() if k != "422"}
    if path == "/metrics":
        responses["200"] = {
            "description": "Prometheus text exposition format",
            "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
        }
    elif path in ("/healthz", "/readyz"):
        responses["503"] = {"description": "Not alive (healthz) or not ready (readyz)."}
    if path.startswith("/v1/"):
        for status, description in _ERRORS.items():
            responses.setdefault(status, _error_response(description))
    model = _BODIES.get(path) if method == "post" else None
    if model is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _register(model, schemas)}},
        }
    if model is not None and path in _STREAMED:
        ok = dict(responses.get("200", {"description": "Successful Response"}))
        ok["content"] = {**ok.get("content", {}), **_SSE}
        ok["description"] = "The completion, or its chunks as server-sent events if `stream`."
        responses["200"] = ok
    op["responses"] = responses
    return op


def _register(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=_REF)
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}},
    }
