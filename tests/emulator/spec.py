"""Close's published OpenAPI spec, cut down to the operations the emulator serves.

The full spec has duplicate operationIds (openapi-core refuses it), so the needed paths and
every component they reference are extracted programmatically; nothing is hand-written.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# Close's own OpenAPI 3.1 spec as published in June 2026 (mirrored by api-evangelist/close,
# openapi/close-openapi.yml), kept verbatim so the tests need nothing outside the repository.
SPEC_PATH = Path(__file__).resolve().parent / "close-openapi.yml"
PATHS = (
    "/activity/sms/",
    "/activity/sms/{id}/",
    "/event/",
    "/event/{id}/",
    "/me/",
    "/activity/",
    "/user/",
    "/user/{id}/",
    "/status/lead/",
    "/status/lead/{id}/",
    "/custom_field/lead/",
    "/sms_template/",
    "/sms_template/{id}/",
    "/phone_number/",
    "/phone_number/{id}/",
    "/lead/",
    "/lead/{id}/",
    "/lead/merge/",
    "/contact/",
    "/contact/{id}/",
    "/activity/lead_merge/",
    "/activity/lead_merge/{id}/",
    "/webhook/",
    "/webhook/{id}/",
)


@functools.lru_cache(maxsize=1)
def full_spec() -> dict[str, Any]:
    """The whole published spec as a dict."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=loader)


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


@functools.lru_cache(maxsize=1)
def subset_spec() -> dict[str, Any]:
    """The served paths with unique operationIds and the transitive closure of their schemas."""
    spec = full_spec()
    paths: dict[str, Any] = {}
    for path in PATHS:
        item = {}
        for method, operation in spec["paths"][path].items():
            operation = dict(operation)
            operation["operationId"] = f"{method}_{path.strip('/').replace('/', '_')}"
            item[method] = operation
        paths[path] = item
    schemas = spec["components"]["schemas"]
    needed: set[str] = set()
    _refs(paths, needed)
    frontier = set(needed)
    while frontier:
        found: set[str] = set()
        for name in frontier:
            _refs(schemas[name], found)
        frontier = found - needed
        needed |= found
    return {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "servers": [
            {"url": "http://127.0.0.1:{port}/api/v1", "variables": {"port": {"default": "80"}}}
        ],
        "paths": paths,
        "components": {
            "schemas": {name: schemas[name] for name in sorted(needed)},
            "securitySchemes": spec["components"].get("securitySchemes", {}),
        },
    }


@functools.lru_cache(maxsize=1)
def openapi() -> OpenAPI:
    """openapi-core validator over the subset."""
    return OpenAPI.from_dict(subset_spec())


def validate_response(response: requests.Response) -> None:
    """Validate a real response (status, content type, body) against Close's spec."""
    openapi().validate_response(
        RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
    )


@functools.lru_cache(maxsize=8)
def component_validator(name: str) -> OAS31Validator:
    """A JSON-schema validator for one published component (e.g. SMSActivity)."""
    resource = Resource(contents=subset_spec(), specification=DRAFT202012)
    registry: Registry = Registry().with_resource("urn:close", resource)
    schema = {"$ref": f"urn:close#/components/schemas/{name}"}
    return OAS31Validator(schema, registry=registry, format_checker=OAS31Validator.FORMAT_CHECKER)


def attachment_content_types() -> list[str]:
    """The MMS content-type enum as published."""
    return full_spec()["components"]["schemas"]["CreateSmsActivityAttachmentsItemsContentType"][
        "enum"
    ]
