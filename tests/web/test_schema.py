"""The published OpenAPI document is valid OpenAPI 3 and describes every endpoint; its interactive
docs are served from this server's own files (no CDN)."""

from __future__ import annotations

import re

import pytest
import yaml
from drf_spectacular.validation import validate_schema
from openapi_spec_validator import validate

from tests.web.api_support import api_client

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/v1/jobs", "get"), ("/api/v1/jobs", "post"), ("/api/v1/jobs/{id}", "get"),
    ("/api/v1/jobs/{id}/result", "get"), ("/api/v1/jobs/{id}/wait", "get"), ("/api/v1/jobs/{id}/cancel", "post"),
    ("/api/v1/jobs/{id}/retry", "post"), ("/api/v1/jobs/{id}/region", "post"), ("/api/v1/gpu", "get"),
    ("/api/v1/jobs/{id}/question", "post"), ("/api/v1/backend", "get"),
    ("/v1/chat/completions", "post"), ("/v1/models", "get"),
}


@pytest.fixture
def schema(alice):
    response = api_client(alice).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    return response.json()


def test_the_published_document_is_valid_openapi(schema):
    validate(schema)  # openapi-spec-validator: the OpenAPI 3.0 rules, references resolved
    validate_schema(schema)  # drf-spectacular's check against the official JSON Schema


def test_it_describes_every_endpoint_and_nothing_else(schema):
    found = {(path, method) for path, item in schema["paths"].items() for method in item}

    assert found == OPERATIONS


def test_every_operation_needs_authentication_and_documents_the_401(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation["security"], (path, method)
            assert "401" in operation["responses"], (path, method)
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["tokenAuth"][
            "description"]}


def test_the_result_formats_are_listed(schema):
    params = schema["paths"]["/api/v1/jobs/{id}/result"]["get"]["parameters"]
    fmt = next(p for p in params if p["name"] == "format")

    assert sorted(fmt["schema"]["enum"]) == ["html", "json", "layout", "md", "md_nohf", "pdf", "svg", "txt"]
    page = next(p for p in params if p["name"] == "page")
    assert page["schema"]["type"] == "integer" and not page.get("required", False)


def test_the_question_endpoint_takes_a_page_and_a_bounded_question(schema):
    operation = schema["paths"]["/api/v1/jobs/{id}/question"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][body]

    assert fields["required"] == ["question"]
    assert fields["properties"]["question"]["maxLength"] == 2000
    assert fields["properties"]["page"]["minimum"] == 1
    assert {"201", "400", "404"} <= set(operation["responses"])


def test_yaml_is_there_for_those_who_ask(alice):
    response = api_client(alice).get("/api/schema/", HTTP_ACCEPT="application/yaml")

    assert response.status_code == 200 and "openapi" in yaml.safe_load(response.content)


def test_the_docs_page_is_served_offline(alice_client):
    page = alice_client.get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "/api/schema/" in html
    scripts = re.findall(r'src="([^"]+)"', html)
    assert scripts and all(s.startswith("/static/") for s in scripts), scripts
    assert "cdn" not in " ".join(scripts).lower()
    bundle = next(s for s in scripts if s.endswith("swagger-ui-bundle.js"))
    served = alice_client.get(bundle)
    assert served.status_code == 200
    assert b"".join(served.streaming_content)[:20]


def test_the_redoc_page_is_served_offline(alice_client):
    html = alice_client.get("/api/redoc/").content.decode()

    scripts = re.findall(r'src="([^"]+)"', html)
    assert scripts and all(s.startswith("/static/") for s in scripts)


def test_an_anonymous_visitor_of_the_docs_is_sent_to_login(client):
    response = client.get("/api/docs/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")
