"""k8s_wait's `condition:` parsed (ansflow/spec/conditions.py): pure."""

from __future__ import annotations

import pytest

from ansflow.spec.conditions import WaitCondition, parse_condition


@pytest.mark.parametrize("text, expected", [
    ("available", WaitCondition("rollout")),
    ("Rollout", WaitCondition("rollout")),
    ("complete", WaitCondition("complete")),
    ("delete", WaitCondition("deleted")),
    ("condition=Ready", WaitCondition("condition", "Ready", "true")),
    ("condition=Progressing=False", WaitCondition("condition", "Progressing", "False")),
    ("jsonpath={.status.phase}=Running", WaitCondition("jsonpath", "status.phase", "Running")),
    ("jsonpath='{.status.readyReplicas}'", WaitCondition("jsonpath", "status.readyReplicas",
                                                         None)),
])
def test_parse_condition(text, expected):
    assert parse_condition(text) == expected


@pytest.mark.parametrize("text", ["bogus", "condition=", "jsonpath=status.phase"])
def test_parse_condition_rejects_what_it_cannot_mean(text):
    with pytest.raises(ValueError):
        parse_condition(text)
