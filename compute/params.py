"""A job's ``params`` checked against its algorithm's own schema, and the API's request schema
built from every algorithm's (one ``oneOf`` branch each, discriminated by ``algorithm``)."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from jsonschema import Draft7Validator

from compute.algorithms import REGISTRY
from marketplace.api_input import MAX_ID

MAX_RIGHTS = 20


def _draft7(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema draft 7 says it (``type: [t, "null"]``)."""
    if isinstance(schema, dict):
        out = {k: _draft7(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable") and "type" in schema:
            out["type"] = [schema["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_draft7(v) for v in schema]
    return schema


@cache
def _validator(algorithm: str) -> Draft7Validator:
    return Draft7Validator(_draft7(REGISTRY[algorithm].params_schema))


def schema_errors(algorithm: str, params: Any) -> dict[str, list[str]]:
    """Field errors (by parameter name) of ``params`` against the algorithm's schema; {} if it fits."""
    if not isinstance(params, dict):
        return {"params": ["An object of the algorithm's parameters."]}
    errors: dict[str, list[str]] = {}
    for err in sorted(_validator(algorithm).iter_errors(params), key=lambda e: list(e.path)):
        if err.validator == "additionalProperties":
            unknown = sorted(set(params) - set(REGISTRY[algorithm].params_schema["properties"]))
            errors.setdefault("params", []).append(f"unknown parameter(s): {', '.join(unknown)}.")
            continue
        field = str(err.path[0]) if err.path else "params"
        if err.validator == "required":
            field = err.message.split("'")[1] if "'" in err.message else "params"
            errors.setdefault(field, []).append("This field is required.")
            continue
        where = [f"item {p + 1}" if isinstance(p, int) else str(p) for p in list(err.path)[1:]]
        message = _message(err)
        errors.setdefault(field, []).append(
            f"{', '.join(where).capitalize()}: {message[0].lower()}{message[1:]}" if where else message
        )
    return errors


def _message(err: Any) -> str:
    v, limit = err.validator, err.validator_value
    if v == "enum":
        return "One of " + ", ".join(map(str, limit)) + "."
    if v == "pattern" and "x-pattern-message" in err.schema:
        return str(err.schema["x-pattern-message"])
    if v in ("minimum", "maximum") and "minimum" in err.schema and "maximum" in err.schema:
        return f"Between {err.schema['minimum']:g} and {err.schema['maximum']:g}."
    if v == "minimum":
        return f"At least {limit:g}."
    if v == "maximum":
        return f"At most {limit:g}."
    if v == "type":
        kinds = limit if isinstance(limit, list) else [limit]
        return (
            "Must be "
            + " or ".join({"integer": "a whole number", "number": "a number"}.get(k, f"a {k}") for k in kinds)
            + "."
        )  # noqa: E501
    if v in ("minLength", "maxLength", "minItems", "maxItems", "pattern", "uniqueItems", "format"):
        return {
            "minLength": f"At least {limit} character(s).",
            "maxLength": f"At most {limit} characters.",
            "minItems": f"At least {limit} item(s).",
            "maxItems": f"At most {limit} items.",
            "pattern": "Not in the expected form.",
            "uniqueItems": "Each item once.",
            "format": f"Must be a {limit}.",
        }[v]
    return str(err.message)


def job_request_schema() -> dict[str, Any]:
    """The body of ``POST /api/jobs/``: one branch per registered algorithm."""
    branches = {}
    for name in sorted(REGISTRY):
        algo = REGISTRY[name]
        branches[name] = {
            "type": "object",
            "title": f"JobRequest_{name}",
            "description": algo.summary,
            "properties": {
                "algorithm": {"type": "string", "enum": [name]},
                "params": copy.deepcopy(algo.params_schema),
                "rights": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                    "minItems": 1,
                    "maxItems": MAX_RIGHTS,
                    "uniqueItems": True,
                    "description": "Your usage rights, one per provider dataset taking part.",
                },
            },
            "required": ["algorithm", "params", "rights"],
            "additionalProperties": False,
        }
    return {"branches": branches}
