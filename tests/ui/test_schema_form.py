"""ui.schema_form: forms from the SDK's parameter schemas and the block catalogue's schemas,
and the submitted strings parsed back into typed values with one message per field.

(No ``from __future__ import annotations`` here: the flow's annotations must stay real types
for the SDK to read them, the classes being local to the fixture.)"""

import json
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pytest

from ui import schema_form as sf

CATALOGUE = json.loads((Path(__file__).parents[2] / "db" / "data" / "block_catalogue.json").read_text())


def block_schema(slug: str) -> dict:
    return next(s["fields"] for s in CATALOGUE["block_schemas"] if s["block_type_slug"] == slug)


@pytest.fixture(scope="module")
def sdk_schema() -> dict:
    """What the real Prefect SDK makes of a flow's signature (as a deployment stores it)."""
    import pydantic
    from prefect import flow
    from prefect.utilities.callables import parameter_schema

    class Color(StrEnum):
        red = "red"
        blue = "blue"

    class Window(pydantic.BaseModel):
        days: int = pydantic.Field(1, ge=1)
        label: str

    @flow
    def etl(name: str, count: int = 3, dry_run: bool = False, ratio: float = 0.5, color: Color = Color.red,
            mode: Literal["fast", "safe"] = "fast", tables: list[str] = ["a"], options: dict = {},  # noqa: B006
            window: Window | None = None, limit: int | None = None, since: str = "x",
            token: pydantic.SecretStr | None = None):
        return name

    return parameter_schema(etl).model_dump()


def kinds(fields):
    return {f.path: f.kind for top in fields for f in top.walk()}


def test_fields_of_an_sdk_parameter_schema(sdk_schema):
    fields = sf.build(sdk_schema)
    assert [f.path for f in fields][:4] == ["name", "count", "dry_run", "ratio"]  # Prefect's ``position`` order
    assert kinds(fields) == {
        "name": "string", "count": "integer", "dry_run": "boolean", "ratio": "number", "color": "enum",
        "mode": "enum", "tables": "json", "options": "json", "window": "object", "window.days": "integer",
        "window.label": "string", "limit": "integer", "since": "string", "token": "secret",
    }
    by_path = {f.path: f for top in fields for f in top.walk()}
    assert by_path["name"].required and not by_path["count"].required and by_path["count"].default == 3
    assert by_path["color"].options == ["red", "blue"] and by_path["limit"].nullable
    assert by_path["window.label"].required and by_path["window.days"].constraints == {"minimum": 1}


def test_parse_gives_typed_values(sdk_schema):
    fields = sf.build(sdk_schema)
    form = {"f.name": " bob ", "f.count": "7", "f.dry_run": ["false", "true"], "f.ratio": "2", "f.color": "blue",
            "f.mode": "safe", "f.tables": '["x", "y"]', "f.options": '{"k": [1]}', "f.window.days": "3",
            "f.window.label": "w", "f.limit": "", "f.since": "", "f.token": ""}
    data, errors = sf.parse(fields, form)
    assert errors == {}
    assert data == {"name": "bob", "count": 7, "dry_run": True, "ratio": 2, "color": "blue", "mode": "safe",
                    "tables": ["x", "y"], "options": {"k": [1]}, "window": {"days": 3, "label": "w"}}
    assert sf.validate(sdk_schema, data, fields) == {}
    unchecked, _ = sf.parse(fields, {"f.name": "a", "f.dry_run": "false"})
    assert unchecked == {"name": "a", "dry_run": False}  # empty inputs are missing: the defaults apply


def test_parse_reports_each_bad_field(sdk_schema):
    fields = sf.build(sdk_schema)
    form = {"f.name": "", "f.count": "1.5", "f.ratio": "much", "f.color": "green", "f.tables": '{"a": 1}',
            "f.options": "{not json", "f.window.days": "0", "f.window.label": "", "f.limit": "x"}
    data, errors = sf.parse(fields, form)
    assert errors == {
        "name": "Required.", "count": "Must be a whole number.", "ratio": "Must be a number.",
        "color": "Must be one of: red, blue.", "tables": "Must be a JSON array.",
        "options": errors["options"], "window.days": "Must be at least 1.", "window.label": "Required.",
        "limit": "Must be a whole number.",
    }
    assert errors["options"].startswith("Must be valid JSON")


def test_an_optional_object_left_empty_is_missing(sdk_schema):
    fields = sf.build(sdk_schema)
    data, errors = sf.parse(fields, {"f.name": "a", "f.window.days": "", "f.window.label": ""})
    assert errors == {} and "window" not in data
    # Partly filled: then its required parts are required.
    _, errors = sf.parse(fields, {"f.name": "a", "f.window.days": "2"})
    assert errors == {"window.label": "Required."}


def test_display_prefills_deployment_parameters_over_defaults(sdk_schema):
    fields = sf.build(sdk_schema)
    shown = sf.display(fields, {"count": 9, "tables": ["t"], "token": "hunter2"})
    assert shown["f.count"] == "9" and shown["f.ratio"] == "0.5" and shown["f.color"] == "red"
    assert json.loads(shown["f.tables"]) == ["t"] and shown["f.dry_run"] is False
    assert shown["f.token"] == ""  # a secret is never put into the page
    # An optional object without a value does not take its children's defaults.
    assert shown["f.window.days"] == "" and shown["f.window.label"] == ""
    shown = sf.display(fields, {"window": {"label": "w"}})
    assert shown["f.window.days"] == "1" and shown["f.window.label"] == "w"


def test_validate_puts_schema_errors_by_their_field():
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5, "position": 0},
                                               "s": {"type": "string", "enum": ["a"]}}}
    fields = sf.build(schema)
    assert sf.validate(schema, {"n": 9}, fields) == {"n": "9 is greater than the maximum of 5"}
    assert sf.validate(schema, {"extra": {"deep": 1}, "n": 1}, fields) == {}
    strict = {**schema, "additionalProperties": False}
    assert sf.FORM_ERROR in sf.validate(strict, {"zzz": 1}, sf.build(strict))


def test_secret_fields_of_blocks():
    assert kinds(sf.build(block_schema("secret"))) == {"value": "secret"}
    assert kinds(sf.build(block_schema("slack-webhook"))) == {
        "notify_type": "enum", "url": "secret", "allow_private_urls": "boolean"}
    smb = {f.path: f for f in sf.build(block_schema("smb"))}
    assert smb["smb_password"].kind == "secret" and smb["smb_password"].nullable and smb["smb_port"].kind == "integer"
    hook = {f.path: f for f in sf.build(block_schema("custom-webhook"))}
    assert hook["secrets"].kind == "json" and hook["secrets"].masked_keys  # secret_fields "secrets.*"
    assert hook["method"].kind == "enum" and hook["method"].default == "POST"
    assert hook["form_data"].kind == "json" and set(hook["form_data"].json_types) == {"object", "string"}


def test_an_empty_secret_keeps_the_stored_value_and_is_never_echoed():
    fields = sf.build(block_schema("slack-webhook"))
    stored = {"url": "https://hooks.slack.com/services/T/B/SECRET", "notify_type": "info"}
    assert sf.display(fields, stored)["f.url"] == ""
    data, errors = sf.parse(fields, {"f.url": "", "f.notify_type": "failure"}, stored=stored)
    assert errors == {} and data["url"] == stored["url"] and data["notify_type"] == "failure"
    data, _ = sf.parse(fields, {"f.url": "https://new", "f.notify_type": "info"}, stored=stored)
    assert data["url"] == "https://new"
    _, errors = sf.parse(fields, {"f.url": ""})  # creating: nothing stored, and it is required
    assert errors == {"url": "Required."}
    assert sf.echo(fields, {"f.url": "typed-secret", "f.notify_type": "info"})["f.url"] == ""


def test_nested_blocks_are_references_to_saved_documents():
    fields = {f.path: f for f in sf.build(block_schema("aws-secret"))}
    assert fields["aws_credentials"].kind == "block" and fields["aws_credentials"].block_types == ("aws-credentials",)
    s3 = {f.path: f for f in sf.build(block_schema("s3-bucket"))}
    assert set(s3["credentials"].block_types) == {"aws-credentials", "minio-credentials"}
    doc_id = "0b8f5a3e-2f7e-4a55-9d8b-3c1f0e4b2a10"
    data, errors = sf.parse(list(fields.values()), {"f.aws_credentials": doc_id, "f.secret_name": "db"})
    assert errors == {} and data == {"aws_credentials": {"$ref": {"block_document_id": doc_id}}, "secret_name": "db"}
    assert sf.validate(block_schema("aws-secret"), data, list(fields.values())) == {}
    _, errors = sf.parse(list(fields.values()), {"f.aws_credentials": "nope", "f.secret_name": "db"})
    assert errors == {"aws_credentials": "Choose one of the saved blocks."}
    inline = {"aws_credentials": {"region_name": "eu"}, "secret_name": "db"}
    assert sf.display(list(fields.values()), inline)["f.aws_credentials"] == sf.KEEP
    kept, _ = sf.parse(list(fields.values()), {"f.aws_credentials": sf.KEEP, "f.secret_name": "db"}, stored=inline)
    assert kept["aws_credentials"] == {"region_name": "eu"}


def test_flattened_objects_and_unions_of_a_block():
    fields = sf.build(block_schema("aws-credentials"))
    paths = kinds(fields)
    assert paths["aws_client_parameters.use_ssl"] == "boolean" and paths["aws_client_parameters.verify"] == "json"
    form = {"f.aws_client_parameters.use_ssl": "false", "f.aws_client_parameters.verify": "/etc/ca.pem",
            "f.aws_client_parameters.api_version": "2020", "f.region_name": "eu-west-1"}
    data, errors = sf.parse(fields, form)
    assert errors == {}
    assert data["aws_client_parameters"] == {"use_ssl": False, "verify": "/etc/ca.pem", "api_version": "2020"}
    form["f.aws_client_parameters.verify"] = "false"
    data, _ = sf.parse(fields, form)
    assert data["aws_client_parameters"]["verify"] is False  # JSON first, plain text when it is not JSON


def test_nul_characters_are_refused_by_the_field():
    fields = sf.build({"type": "object", "properties": {"s": {"type": "string"}}})
    assert sf.parse(fields, {"f.s": "a\x00b"})[1] == {"s": "Must not contain NUL characters."}


def test_every_catalogue_schema_renders():
    """Each built-in block type's latest schema makes a form the template can render."""
    from ui.render import environment

    macro = environment.get_template("_admin_schema_form.html").module.fields
    for entry in CATALOGUE["block_schemas"]:
        fields = sf.build(entry["fields"])
        html = str(macro(fields, sf.display(fields, None), {}, {}, set()))
        assert fields and all(f'name="{f.name}"' in html for top in fields for f in top.walk() if f.kind != "object")
        assert "position" not in html
