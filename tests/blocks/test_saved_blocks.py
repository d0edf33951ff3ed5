"""Saved blocks found one way (ansflow.blocks.saved): the names of a type's saved blocks, and
one loaded by name with an error that says how to save it, on the real Prefect server."""

from __future__ import annotations

import uuid

import pytest

from ansflow.blocks.kubernetes import (
    ClusterNotFound,
    KubernetesCluster,
    load_saved_cluster,
    saved_cluster_names,
)
from ansflow.blocks.saved import BlockNotFound, saved_block_names
from ansflow.errors import AnsflowError, StepFailed


def test_saved_names_are_sorted_and_loaded_by_name(prefect_server):
    tag = uuid.uuid4().hex[:8]
    names = [f"zz-{tag}", f"aa-{tag}"]
    for name in names:
        KubernetesCluster(server="https://10.0.0.1:6443", token=f"tok-{name}").save(name)
    listed = saved_cluster_names()
    assert [n for n in listed if tag in n] == sorted(names)
    assert listed == sorted(listed)
    block = load_saved_cluster(names[0])
    assert block.token.get_secret_value() == f"tok-{names[0]}"


def test_a_block_type_never_registered_has_no_saved_blocks(prefect_server):
    assert saved_block_names(f"never-registered-{uuid.uuid4().hex[:8]}", "things") == []


def test_a_missing_cluster_says_how_to_save_one(prefect_server):
    with pytest.raises(ClusterNotFound) as caught:
        load_saved_cluster("never-saved-here")
    assert isinstance(caught.value, BlockNotFound) and isinstance(caught.value, StepFailed)
    assert str(caught.value).startswith("no saved Kubernetes cluster block named "
                                        "'never-saved-here'")
    assert caught.value.hint == ("save one: ansflow cluster add never-saved-here "
                                 "--kubeconfig FILE")


@pytest.mark.parametrize("hostile", ["x; touch /tmp/m", "../etc", "{{ secrets.a }}", "a\x00b",
                                     "A" * 300, "caf\udce9"])
def test_hostile_names_are_refused_before_prefect_is_asked(hostile):
    # No Prefect server requested: a name that got past the check would fail differently.
    with pytest.raises(StepFailed, match=r"^cluster: '.*' is not a block name"):
        load_saved_cluster(hostile)


def test_a_saved_block_that_no_longer_validates_is_named_without_its_values(prefect_server):
    # Written through the API (as an older ansflow or another client could): a token but no
    # server, which the block's validator refuses on load.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentCreate

    KubernetesCluster.register_type_and_schema()
    name = f"broken-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug(KubernetesCluster.get_block_type_slug())
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
        client.create_block_document(BlockDocumentCreate(
            name=name, data={"token": "s3cr3t-token-value", "namespace": "default"},
            block_type_id=block_type.id, block_schema_id=schema.id))
    with pytest.raises(ClusterNotFound) as caught:
        load_saved_cluster(name)
    message = str(caught.value)
    assert message.startswith(f"cluster {name!r}: cannot load its block (")
    assert "s3cr3t-token-value" not in message and len(message) < 400


def test_an_unreachable_prefect_api_is_one_line(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with pytest.raises(AnsflowError, match=r"^cannot list the saved Kubernetes clusters: "
                                               r"the Prefect API failed \(\w+\)$"):
            saved_cluster_names()
