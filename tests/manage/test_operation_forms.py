"""The run forms Prefect builds from the object operations' signatures (pure): every field
typed and documented, dropdowns where the choice is closed, nothing the flow adds itself."""

from __future__ import annotations

import inspect

import pytest
from prefect.utilities.callables import parameter_schema

from ansflow.manage import OPERATIONS
from ansflow.manage.objects import __all__ as OBJECT_OPERATIONS


@pytest.mark.parametrize("name", OBJECT_OPERATIONS)
def test_every_form_field_is_typed_documented_and_keyword_only(name):
    func = OPERATIONS[name].func
    params = list(inspect.signature(func).parameters.values())
    assert [p.name for p in params[:2]] == ["ctx", "session"]
    own = params[2:]
    assert own and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in own)
    assert not {"cluster", "namespace", "confirm"} & {p.name for p in own}
    schema = parameter_schema(func).model_dump()
    for param in own:
        field = schema["properties"][param.name]
        assert param.annotation is not inspect.Parameter.empty, param.name
        assert field.get("description"), f"{name}.{param.name} has no help text"


def test_closed_choices_are_dropdowns_and_service_ports_a_nested_form():
    def field(op, param):
        return parameter_schema(OPERATIONS[op].func).model_dump()["properties"][param]

    assert field("service", "type")["enum"] == ["ClusterIP", "NodePort", "LoadBalancer"]
    assert field("deployment", "strategy")["enum"] == ["RollingUpdate", "Recreate"]
    assert "Opaque" in field("secret", "type")["enum"]
    assert field("configmap", "data")["anyOf"][0] == {"additionalProperties": {"type": "string"},
                                                      "type": "object"}
    ports = parameter_schema(OPERATIONS["service"].func).model_dump()
    assert ports["definitions"]["ServicePort"]["properties"]["protocol"]["enum"] == [
        "TCP", "UDP", "SCTP"]
