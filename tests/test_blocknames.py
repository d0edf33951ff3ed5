"""The block-name check every loader of a Prefect block by name goes through."""

import pytest

from ansflow.blocknames import MAX_LENGTH, SHOWN, check_block_name
from ansflow.errors import StepFailed


def test_names_prefect_can_save_pass_unchanged():
    for name in ("local", "prod-registry", "k8s-1", "a"):
        assert check_block_name(name, "cluster") == name
    assert check_block_name("a" * MAX_LENGTH) == "a" * MAX_LENGTH


@pytest.mark.parametrize("name", [
    "x\ntouch /tmp/m\n", "x\x00; touch /tmp/m", "a" * (100 * 1024), "x\n---\nkind: ConfigMap\n",
    "Prod", "prod_registry", "../secret", "a/b", "x?y=1", "x#y", "x%2e", "x\udcff", "x ",
    "local\n"])
def test_anything_else_is_refused_on_one_short_line(name):
    with pytest.raises(StepFailed) as caught:
        check_block_name(name, "cluster")
    message = str(caught.value)
    assert message.startswith("cluster: ")
    assert message.endswith("is not a block name: lowercase letters, digits and dashes, "
                            f"at most {MAX_LENGTH} characters")
    assert "\n" not in message and "\x00" not in message
    assert len(message) < SHOWN * 6 + 100
    message.encode("utf-8")  # a lone surrogate is shown escaped


def test_the_shown_value_is_cut():
    with pytest.raises(StepFailed, match=r"^'a{60}' is not a block name"):
        check_block_name("a" * 100 + "B")


def test_every_loader_by_name_refuses_before_asking_prefect():
    # No Prefect server here: a name that got past the check would fail differently.
    from ansflow.flows.run_secrets import load_secrets
    from ansflow.runtime.docker_access import docker_base_url, resolve_registry
    from ansflow.runtime.k8s_session import load_cluster
    from ansflow.runtime.ssh_session import load_host_block

    bad = "x\ntouch /tmp/m"
    for load, what in ((lambda: load_cluster(bad), "cluster"),
                       (lambda: load_host_block(bad), "host"),
                       (lambda: docker_base_url(bad), "docker host"),
                       (lambda: resolve_registry(None, bad), "credentials"),
                       (lambda: resolve_registry("a" * 300, None), "registry"),
                       (lambda: load_secrets([bad]), "secret")):
        with pytest.raises(StepFailed, match=rf"^{what}: '.*' is not a block name"):
            load()
