"""The JSON Schema of pipeline files, generated from the models."""

from __future__ import annotations

import copy
from typing import Any

from ansflow.spec.models import Pipeline, PipelineFile


def pipeline_json_schema() -> dict[str, Any]:
    """A schema accepting both shapes: `pipeline: {...}` and a bare `steps:`/`stages:` file."""
    wrapped = PipelineFile.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    bare = Pipeline.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs = {**wrapped.pop("$defs", {}), **bare.pop("$defs", {})}
    bare = copy.deepcopy(bare)
    bare["required"] = [r for r in bare.get("required", []) if r != "name"]
    bare["title"] = "BarePipeline"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ansflow pipeline",
        "description": "A hybrid shell / Docker / Kubernetes pipeline run as a Prefect flow.",
        "oneOf": [wrapped, bare],
        "$defs": defs,
    }
