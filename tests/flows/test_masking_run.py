"""Secrets stay secret in real runs: what real processes and containers print reaches the
Prefect server's logs masked, whatever its shape (multi-line, across the line splitter's
cuts, encoded), credentials of blocks included, and `::add-mask::` works."""

from __future__ import annotations

import base64
import json
import logging
import secrets as random
from urllib.parse import quote

import pytest
from fixtures_pipeline import by_id, logs

PEM = ("-----BEGIN PRIVATE KEY-----\n"
       + "\n".join(base64.b64encode(random.token_bytes(48)).decode() for _ in range(4))
       + "\n-----END PRIVATE KEY-----\n")
PAD = "pad() { head -c \"$1\" /dev/zero | tr '\\0' x; }; "


def _no_leak(lines: list[str], *values: str) -> None:
    for value in values:
        leaked = [line[:200] for line in lines if value in line]
        assert not leaked, f"{value[:40]!r} leaked in {leaked}"


def test_a_multi_line_secret_in_env_printed_by_a_command_is_masked(run_pipeline):
    from prefect.blocks.system import Secret

    Secret(value=PEM).save("mask-pem-key", overwrite=True)
    state, summary = run_pipeline("""
        steps:
          - id: show
            type: command
            env: {KEY: "{{ secrets['mask-pem-key'] }}"}
            config:
              command: 'printf "%s\\n" "$KEY"; echo "key=$KEY" | head -c 80; echo; echo printed-all'
    """)
    assert state.is_completed(), summary["message"]
    lines = logs(state.state_details.flow_run_id, "printed-all")
    assert "printed-all" in lines
    _no_leak(lines, *[line for line in PEM.splitlines() if len(line) >= 8])
    assert sum(line == "***" for line in lines) >= 4


def test_a_secret_printed_across_the_splitters_cuts_is_masked(run_pipeline):
    from prefect.blocks.system import Secret

    token = f"tok-{random.token_hex(12)}"
    Secret(value=token).save("mask-long-token", overwrite=True)
    state, summary = run_pipeline(f"""
        steps:
          - id: long
            type: command
            env: {{TOKEN: "{{{{ secrets['mask-long-token'] }}}}"}}
            config:
              command: >-
                {PAD}
                pad 8190; printf '%s' "$TOKEN"; pad 70000; echo;
                pad 65530; printf '%s' "$TOKEN"; pad 10; echo;
                pad 8185; printf '%s' "$TOKEN"; echo;
                echo long-done
    """)
    assert state.is_completed(), summary["message"]
    lines = logs(state.state_details.flow_run_id, "long-done")
    assert "long-done" in lines
    _no_leak(lines, token, token[:12], token[-12:])
    assert sum(line.count("***") for line in lines) == 3


def test_encoded_forms_of_a_secret_are_masked(run_pipeline, tmp_path):
    from prefect.blocks.system import Secret

    secret = f'Pa$$/w+rd"é-{random.token_hex(6)}?&x'
    Secret(value=secret).save("mask-encoded", overwrite=True)
    raw = secret.encode()
    forms = [base64.b64encode(p + raw + b"-end").decode() for p in (b"", b"u", b"us")]
    forms += [base64.urlsafe_b64encode(p + raw).decode() for p in (b"", b"u", b"us")]
    forms += [f"https://u:{quote(secret, safe='')}@host/x", json.dumps({"password": secret})]
    (tmp_path / "encoded.txt").write_text("\n".join(forms) + "\n", encoding="utf-8")
    state, summary = run_pipeline("""
        steps:
          - id: enc
            type: command
            config:
              command: "cat encoded.txt; echo enc-done; true {{ secrets['mask-encoded'] | length }}"
    """)
    assert state.is_completed(), summary["message"]
    lines = logs(state.state_details.flow_run_id, "enc-done")
    assert "enc-done" in lines
    _no_leak(lines, *forms, quote(secret, safe=""), json.dumps(secret)[1:-1])
    assert sum("***" in line for line in lines) == len(forms)


def test_add_mask_hides_a_derived_value_in_this_and_later_steps(run_pipeline, tmp_path):
    state, summary = run_pipeline("""
        steps:
          - id: derive
            type: command
            config:
              command: >-
                v="derived-$(echo abc | tr a-c x-z)-value"; echo "::add-mask::$v";
                echo "got $v"; echo "again $v" > derived.txt
          - id: later
            type: command
            needs: [derive]
            config: {command: "cat derived.txt"}
    """)
    assert state.is_completed(), summary["message"]
    lines = logs(state.state_details.flow_run_id, "got ***", "again ***")
    assert "got ***" in lines and "again ***" in lines
    assert not any("::add-mask::" in line for line in lines)
    _no_leak(lines, "derived-xyz-value")
    assert "derived-xyz-value" not in json.dumps(summary)


def test_a_secret_shorter_than_4_characters_is_refused_before_any_step(run_pipeline, tmp_path):
    from prefect.blocks.system import Secret

    Secret(value="abc").save("mask-short", overwrite=True)
    state, _ = run_pipeline("""
        steps:
          - id: use
            type: command
            config: {command: "touch ran; echo {{ secrets['mask-short'] }}"}
    """)
    assert state.is_failed()
    assert state.message.startswith("secret 'mask-short' is 3 character(s) long: secrets must "
                                    "have at least 4 characters")
    assert "\n" not in state.message and not (tmp_path / "ran").exists()


@pytest.mark.docker
def test_a_registry_password_printed_by_any_step_of_the_run_is_masked(
        run_pipeline, docker_env, tmp_path):
    from ansflow.runtime.docker_access import DockerRegistryCredentials

    DockerRegistryCredentials(username=docker_env.user, password=docker_env.password,
                              registry_url=docker_env.auth_registry).save(
        "mask-auth-registry", overwrite=True)
    (tmp_path / "pw.txt").write_text(docker_env.password, encoding="utf-8")
    state, summary = run_pipeline("""
        steps:
          - {id: early, type: command, config: {command: 'echo "early=$(cat pw.txt)"'}}
          - id: pull
            type: docker_pull
            needs: [early]
            allow_failure: true
            config: {image: ansflow-test/never-pushed, tag: nope, credentials: mask-auth-registry}
          - {id: late, type: command, needs: [pull], config: {command: 'echo "late=$(cat pw.txt)"'}}
    """)
    steps = by_id(summary)
    assert steps["late"]["state"] == "completed", summary
    lines = logs(state.state_details.flow_run_id, "early=***", "late=***")
    assert "early=***" in lines and "late=***" in lines
    _no_leak(lines, docker_env.password)


@pytest.mark.docker
def test_a_container_printing_a_secret_across_a_cut_is_masked(make_ctx, base_image, caplog):
    from ansflow.spec.steps import DockerRunConfig
    from ansflow.tasks.docker_run import execute_docker_run

    token = f"ctr-{random.token_hex(12)}"
    ctx = make_ctx(secrets=[token])
    execute_docker_run(ctx, DockerRunConfig(image=base_image, env={"T": token}, command=[
        "sh", "-c", PAD + "pad 8190; printf '%s' \"$T\"; pad 70000; echo; "
                    "pad 65530; printf '%s' \"$T\"; echo"]))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    _no_leak(lines, token, token[:12], token[-12:])
    assert sum(line.count("***") for line in lines) == 2


@pytest.mark.k8s
def test_a_cluster_key_printed_by_an_earlier_step_is_masked(run_pipeline, dev_cluster, tmp_path):
    from ansflow.blocks.kubernetes import KubernetesCluster

    block = KubernetesCluster.load(dev_cluster.block_name)
    secrets = [v for _what, v in block.secret_values()]
    key = next(v for v in secrets if "PRIVATE KEY" in v)
    (tmp_path / "key.pem").write_text(key, encoding="utf-8")
    state, summary = run_pipeline(f"""
        steps:
          - {{id: show, type: command, config: {{command: "cat key.pem; echo shown"}}}}
          - id: later
            type: k8s_wait
            needs: [show]
            when: "false"
            config: {{cluster: {dev_cluster.block_name}, namespace: default,
                      resource_type: deployment, resource_name: nothing, timeout: 1}}
    """)
    assert state.is_completed(), summary["message"]
    lines = logs(state.state_details.flow_run_id, "shown")
    assert "shown" in lines
    _no_leak(lines, *[line for line in key.splitlines() if len(line) >= 8])


def test_the_token_of_a_pod_steps_cluster_is_masked_from_the_first_step(run_pipeline,
                                                                         tmp_path):
    """Credentials are loaded by where a step acts (here a command in a pod), not by a
    step-type name prefix."""
    from ansflow.blocks.kubernetes import KubernetesCluster

    token = f"pod-tok-{random.token_hex(12)}"
    KubernetesCluster(server="https://127.0.0.1:9", token=token).save("mask-pod-cluster",
                                                                      overwrite=True)
    (tmp_path / "tok.txt").write_text(token, encoding="utf-8")
    state, summary = run_pipeline("""
        steps:
          - {id: show, type: command, config: {command: 'echo "shown=$(cat tok.txt)"'}}
          - id: in_pod
            type: command
            runs_on: kubernetes
            needs: [show]
            when: "false"
            config: {command: "true", image: busybox, cluster: mask-pod-cluster}
    """)
    assert state.is_completed(), summary["message"]
    lines = logs(state.state_details.flow_run_id, "shown=***")
    assert "shown=***" in lines
    _no_leak(lines, token)
