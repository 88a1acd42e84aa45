"""The OpenAPI document stays true: every API route is in it and everything in it is a route,
scopes match what handlers demand, references resolve, and real responses fit the schemas."""

from __future__ import annotations

import re
from typing import Any

import pytest

from crm.web.api.openapi import openapi_document
from crm.web.api.routes import PREFIX
from crm.web.app import HealthReport, create_app

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _api_routes() -> dict[tuple[str, str], Any]:
    """(METHOD, path template) -> handler for every route the app serves under /api."""
    app = create_app(None, lambda: HealthReport("logged_in", 1, 0, 0))  # type: ignore[arg-type]
    routes = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(PREFIX + "/") and route.method != "HEAD":
            routes[(route.method, path)] = route.handler
    return routes


def _documented(doc: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(method.upper(), path): op for path, item in doc["paths"].items()
            for method, op in item.items() if method in HTTP_METHODS}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    assert set(_api_routes()) == set(_documented(openapi_document()))


def test_scopes_in_the_document_are_the_ones_handlers_demand() -> None:
    documented = _documented(openapi_document())
    for key, handler in _api_routes().items():
        required = getattr(handler, "required_scope", None)
        expected = [{"bearerToken": [required]}] if required else []
        assert documented[key]["security"] == expected, key


def test_writes_document_what_each_scope_gets_back() -> None:
    doc = openapi_document()
    for method, path in (("post", "/api/cases"), ("patch", "/api/cases/{number}")):
        op = doc["paths"][path][method]
        assert "cases:read" in op["description"] and "CaseReceipt" in op["description"]
        ok = next(v for k, v in op["responses"].items() if k.startswith("2"))
        schema = ok["content"]["application/json"]["schema"]
        assert schema == {"anyOf": [{"$ref": "#/components/schemas/Case"},
                                    {"$ref": "#/components/schemas/CaseReceipt"}]}
    receipt = doc["components"]["schemas"]["CaseReceipt"]
    assert set(receipt["properties"]) == {"number", "stage", "updated_at"}


def test_document_is_well_formed() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    refs = re.findall(r"'\$ref': '#/([^']+)'", repr(doc))
    assert refs
    for ref in refs:
        node: Any = doc
        for part in ref.split("/"):
            node = node[part]
    operation_ids = [op["operationId"] for op in _documented(doc).values()]
    assert len(operation_ids) == len(set(operation_ids))
    for (method, path), op in _documented(doc).items():
        params = re.findall(r"{(\w+)}", path)
        declared = [p["name"] for p in doc["paths"][path].get("parameters", [])
                    + op.get("parameters", []) if p["in"] == "path"]
        assert sorted(params) == sorted(declared), (method, path)
        assert op["responses"], (method, path)


# -- responses against their schemas ----------------------------------------------------------
_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool,
          "number": (int, float), "null": type(None)}


def check(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str = "$") -> None:
    """Enough of JSON Schema for the document's own constructs."""
    if "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return check(value, node, doc, where)
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                return check(value, option, doc, where)
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: fits none of anyOf: {errors}")
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(isinstance(value, _TYPES[t]) and not (t in {"integer", "number"}
                                                        and isinstance(value, bool))
                 for t in types)
        assert ok, f"{where}: {value!r} is not {types}"
    if isinstance(value, dict) and "properties" in schema:
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"{where}: missing {missing}"
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(schema["properties"])
            assert not extra, f"{where}: undocumented {extra}"
        for key, sub in schema["properties"].items():
            if key in value:
                check(value[key], sub, doc, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(item, schema["items"], doc, f"{where}[{i}]")
    if isinstance(value, str) and "pattern" in schema:
        assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"
    return None


def _ref_schema(doc, name: str) -> dict[str, Any]:
    return doc["components"]["schemas"][name]


def _response_schema(doc, method: str, path: str, status: int) -> dict[str, Any]:
    response = doc["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


async def test_real_responses_fit_the_document(api) -> None:
    from tests.api.test_api import NEW_CASE, T0, _calls

    doc = (await (await api.client.get("/api/openapi.json")).json())
    assert doc == openapi_document()
    w, r, c = api.auth("writer"), api.auth("reader"), api.auth("calls")
    seen: set[tuple[str, str, int]] = set()

    async def call(method, url, path, headers, json=None, status=200):
        resp = await api.client.request(method, url, headers=headers, json=json)
        assert resp.status == status, await resp.text()
        body = await resp.json()
        check(body, _response_schema(doc, method, path, status), doc, f"{method} {url}")
        seen.add((method, path, status))
        return body

    case = await call("POST", "/api/cases", "/api/cases", w, NEW_CASE, 201)
    number = case["number"]
    ids = await _calls(api, number)
    await call("GET", f"/api/cases/{number}", "/api/cases/{number}", r)
    await call("PATCH", f"/api/cases/{number}", "/api/cases/{number}", w,
               {"stage": "dispatched", "note": "n"})
    await call("PATCH", f"/api/cases/{number}", "/api/cases/{number}", w,
               {"stage": "closed"}, 409)
    write_only = api.auth("write_only")  # gets the documented receipt, not the case
    receipt = await call("POST", "/api/cases", "/api/cases", write_only, NEW_CASE, 201)
    assert set(receipt) == {"number", "stage", "updated_at"}
    with pytest.raises(AssertionError, match="missing"):
        check(receipt, _ref_schema(doc, "Case"), doc)
    receipt = await call("PATCH", f"/api/cases/{receipt['number']}", "/api/cases/{number}",
                         write_only, {"stage": "dispatched"})
    assert set(receipt) == {"number", "stage", "updated_at"}
    repeats = await call("GET", f"/api/cases/repeats?category={NEW_CASE['category']}"
                         f"&phone={NEW_CASE['contact_phone']}", "/api/cases/repeats", r)
    assert number in [c["number"] for c in repeats["repeats"]]
    await call("GET", "/api/cases/repeats?category=repair", "/api/cases/repeats", r, status=400)
    await call("GET", "/api/consultations", "/api/consultations", c)
    await call("GET", f"/api/consultations/{ids[0]}", "/api/consultations/{id}", c)
    await call("GET", "/api/consultations/12345", "/api/consultations/{id}", c, status=404)
    levels = api.auth("levels")
    day = T0.date().isoformat()  # the calls above, still open: in progress
    for bucket in ("hour", "day"):
        found = await call("GET", f"/api/service-levels?bucket={bucket}&from={day}&to={day}",
                           "/api/service-levels", levels)
        assert found["total"]["in_progress"] == 3 and found["bucket"] == bucket
    await call("GET", "/api/service-levels?bucket=week", "/api/service-levels", levels,
               status=400)
    await call("GET", "/api/service-levels", "/api/service-levels", c, status=403)
    await call("POST", "/api/cases", "/api/cases", w, {"x": 1}, 400)
    await call("POST", "/api/cases", "/api/cases", {}, NEW_CASE, 401)
    await call("POST", "/api/cases", "/api/cases", r, NEW_CASE, 403)
    from tests.api.test_dispatch_api import DISPATCH_PATHS  # checked there

    assert {(m, p) for m, p, _ in seen} >= {
        (m, p) for m, p in _documented(doc) if p not in DISPATCH_PATHS} - {
        ("GET", "/api/openapi.json")}
