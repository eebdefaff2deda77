"""A small JSON Schema (draft 2020-12) validator for the keywords report.schema.json uses.

The ``jsonschema`` package is not a test dependency; this covers exactly the subset the
report schema is written in, and refuses any other keyword so the schema cannot grow
past what is checked: type, enum, const, properties, required, additionalProperties,
items, minItems, maxItems, minimum, maximum, anyOf, $ref (to #/$defs/...), and the
annotations $schema, $id, title, description.
"""

from __future__ import annotations

from typing import Any

_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})
_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "anyOf",
        "$ref",
    }
)
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _equal(a: Any, b: Any) -> bool:
    """JSON Schema equality: true is not 1, but 1 is 1.0."""
    if _is_type(a, "number") and _is_type(b, "number"):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def validate(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Every violation of `schema` by `instance`, as 'path: message' strings."""
    errors: list[str] = []
    _check(instance, schema, schema, "$", errors)
    return errors


def _check(
    value: Any, node: dict[str, Any], root: dict[str, Any], path: str, errors: list[str]
) -> None:
    unknown = set(node) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise ValueError(f"{path}: schema keyword(s) this validator does not know: {unknown}")
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"{path}: only local $defs references are supported: {ref}")
        _check(value, root["$defs"][ref.removeprefix("#/$defs/")], root, path, errors)
    if "anyOf" in node:
        branches = []
        for branch in node["anyOf"]:
            found: list[str] = []
            _check(value, branch, root, path, found)
            branches.append(found)
        if all(branches):
            errors.append(f"{path}: matches no anyOf branch ({'; '.join(b[0] for b in branches)})")
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is_type(value, name) for name in names):
            errors.append(f"{path}: {value!r} is not of type {names}")
            return
    if "const" in node and not _equal(value, node["const"]):
        errors.append(f"{path}: {value!r} is not {node['const']!r}")
    if "enum" in node and not any(_equal(value, option) for option in node["enum"]):
        errors.append(f"{path}: {value!r} is not one of {node['enum']}")
    if _is_type(value, "number"):
        if "minimum" in node and value < node["minimum"]:
            errors.append(f"{path}: {value} is below {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            errors.append(f"{path}: {value} is above {node['maximum']}")
    if isinstance(value, dict):
        properties = node.get("properties", {})
        for name in node.get("required", []):
            if name not in value:
                errors.append(f"{path}: missing required property {name!r}")
        for name, item in value.items():
            if name in properties:
                _check(item, properties[name], root, f"{path}.{name}", errors)
            elif node.get("additionalProperties", True) is False:
                errors.append(f"{path}: unexpected property {name!r}")
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            errors.append(f"{path}: fewer than {node['minItems']} items")
        if "maxItems" in node and len(value) > node["maxItems"]:
            errors.append(f"{path}: more than {node['maxItems']} items")
        if "items" in node:
            for i, item in enumerate(value):
                _check(item, node["items"], root, f"{path}[{i}]", errors)
