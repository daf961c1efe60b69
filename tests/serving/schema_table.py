"""A table of JSON schemas, one per feature of JSON Schema a response_format uses: nested objects,
arrays with bounds, enums, anyOf, $ref/$defs, patterns, formats, numbers with bounds, optional
and required properties. Strings carry a maxLength: random weights ramble inside a string."""

from typing import Any

S = {"type": "string", "maxLength": 8}
INT = {"type": "integer", "minimum": -50, "maximum": 50}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "string": obj({"a": S}),
    "string with minLength": obj({"a": {"type": "string", "minLength": 2, "maxLength": 5}}),
    "boolean": obj({"ok": {"type": "boolean"}}),
    "null": obj({"nothing": {"type": "null"}}),
    "integer bounded": obj({"n": INT}),
    "integer exclusive bounds": obj(
        {"n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}}
    ),
    "number bounded": obj({"x": {"type": "number", "minimum": -1.5, "maximum": 2.5}}),
    "enum of strings": obj({"color": {"enum": ["red", "green", "blue"]}}),
    "enum of mixed": obj({"v": {"enum": [1, "two", None, True]}}),
    "const": obj({"kind": {"const": "fixed"}}),
    "nested objects": obj({"user": obj({"name": S, "admin": {"type": "boolean"}})}),
    "three levels": obj({"a": obj({"b": obj({"c": INT})})}),
    "array bounded": obj({"tags": {"type": "array", "items": S, "minItems": 1, "maxItems": 3}}),
    "array exact size": obj({"xy": {"type": "array", "items": INT, "minItems": 2, "maxItems": 2}}),
    "array of objects": obj({"items": {"type": "array", "items": obj({"id": INT}), "maxItems": 2}}),
    "array of enums": obj(
        {"flags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 4}}
    ),
    "top-level array": {"type": "array", "items": {"type": "boolean"}, "maxItems": 4},
    "anyOf scalars": obj({"v": {"anyOf": [{"type": "boolean"}, {"type": "null"}, INT]}}),
    "anyOf objects": obj({"shape": {"anyOf": [obj({"r": INT}), obj({"w": INT, "h": INT})]}}),
    "nullable string": obj({"note": {"type": ["string", "null"], "maxLength": 6}}),
    "$ref and $defs": {
        "$defs": {"point": obj({"x": INT, "y": INT})},
        **obj({"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/$defs/point"}}),
    },
    "$ref inside array": {
        "$defs": {"tag": {"enum": ["x", "y", "z"]}},
        **obj({"tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "maxItems": 3}}),
    },
    "pattern code": obj({"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}}),
    "pattern digits": obj({"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}),
    "format date": obj({"day": {"type": "string", "format": "date"}}),
    "format email": obj({"mail": {"type": "string", "format": "email", "maxLength": 20}}),
    "format uuid": obj({"id": {"type": "string", "format": "uuid"}}),
    "format ipv4": obj({"ip": {"type": "string", "format": "ipv4"}}),
    "format date-time": obj({"at": {"type": "string", "format": "date-time"}}),
    "optional properties": obj({"id": INT, "note": S, "flag": {"type": "boolean"}}, ["id"]),
    "all optional": obj({"a": S, "b": INT}, []),
    "required and optional nested": obj(
        {
            "user": obj({"name": S, "age": INT}, ["name"]),
            "tags": {"type": "array", "items": S, "maxItems": 2},
        },
        ["user"],
    ),
    "unicode property names": obj({"naïve": {"type": "boolean"}, "日本": INT}),
}
