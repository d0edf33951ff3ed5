"""Kubeconfig `exec:` credential plugins as EKS, GKE and AKS use them: a real plugin program
printing a client.authentication.k8s.io/v1 ExecCredential with a service-account token the
dev cluster accepts (TokenRequest API); its expirationTimestamp decides when it runs again
(counted through a file the plugin writes); a failing, hanging or confused plugin is an error
naming the kubeconfig user, never requests without credentials."""

from __future__ import annotations

import base64
import stat
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from kubernetes import client as k8s
from pydantic import SecretStr

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube import translate_error
from ansflow.engines.kube_exec import EXEC_ENV, EXEC_TIMEOUT_ENV
from ansflow.errors import StepFailed

# The plugin: appends a line to CALLS each run; prints the token in TOKEN_FILE, expiring
# EXPIRES_IN seconds from now (read from a file, so a test can change it between runs).
PLUGIN = f"""#!{sys.executable}
import datetime, json, os, pathlib, sys, time
d = pathlib.Path(sys.argv[1])
with open(d / "calls", "a") as f:
    f.write(os.environ["KUBERNETES_EXEC_INFO"] + "\\n")
mode = (d / "mode").read_text().strip() if (d / "mode").exists() else "ok"
if mode == "fail":
    print("token expired: run `cloud login`", file=sys.stderr); sys.exit(3)
if mode == "hang":
    time.sleep(60)
if mode == "garbage":
    print("<html>not json</html>"); sys.exit(0)
if mode == "notoken":
    print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1",
                      "kind": "ExecCredential", "status": {{}}}})); sys.exit(0)
if mode == "badtime":
    print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1",
                      "kind": "ExecCredential", "status": {{"token": "t",
                      "expirationTimestamp": "tomorrow {{{{ x }}}}"}}}})); sys.exit(0)
status = {{"token": (d / "token").read_text().strip()}}
expires = (d / "expires_in").read_text().strip() if (d / "expires_in").exists() else ""
if expires:
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=float(expires))
    status["expirationTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1",
                  "kind": "ExecCredential", "status": status}}))
"""


def _plugin(folder):
    path = folder / "cloud-token"
    path.write_text(PLUGIN)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _block(dev_cluster, command: str, folder, **extra) -> KubernetesCluster:
    ca = (dev_cluster.paths.pki / "ca.crt").read_bytes()
    plugin = {"apiVersion": "client.authentication.k8s.io/v1", "command": command,
              "args": [str(folder)], "interactiveMode": "IfAvailable", **extra}
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "eks",
           "clusters": [{"name": "k", "cluster": {
               "server": dev_cluster.server,
               "certificate-authority-data": base64.b64encode(ca).decode()}}],
           "users": [{"name": "cloud-user", "user": {"exec": plugin}}],
           "contexts": [{"name": "eks", "context": {"cluster": "k", "user": "cloud-user"}}]}
    return KubernetesCluster(kubeconfig=SecretStr(yaml.safe_dump(doc)))


def _token(dev_cluster, ns: str, account: str) -> str:
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": account}})
        return core.create_namespaced_service_account_token(
            account, ns, {"spec": {"expirationSeconds": 3600}}).status.token


def _whoami(api) -> str:
    review = k8s.AuthenticationV1Api(api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    return review.status.user_info.username


def _calls(folder) -> int:
    path = folder / "calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "plugin"
    folder.mkdir()
    monkeypatch.setenv(EXEC_ENV, _plugin(folder))
    return folder


@pytest.mark.k8s
def test_a_valid_token_is_used_and_the_plugin_runs_once(dev_cluster, plugin_dir):
    ns = dev_cluster.namespace("exec")
    (plugin_dir / "token").write_text(_token(dev_cluster, ns, "a"))
    (plugin_dir / "expires_in").write_text("3600")
    block = _block(dev_cluster, _plugin(plugin_dir), plugin_dir, provideClusterInfo=True)
    with block.get_client() as api:
        for _ in range(3):
            assert _whoami(api) == f"system:serviceaccount:{ns}:a"
    assert _calls(plugin_dir) == 1
    info = yaml.safe_load((plugin_dir / "calls").read_text().splitlines()[0])
    assert info["spec"]["interactive"] is False  # a worker never prompts
    assert info["spec"]["cluster"]["server"] == dev_cluster.server  # provideClusterInfo


@pytest.mark.k8s
def test_an_expired_token_runs_the_plugin_again_and_its_new_token_is_used(
    dev_cluster, plugin_dir
):
    ns = dev_cluster.namespace("exec-exp")
    (plugin_dir / "token").write_text(_token(dev_cluster, ns, "first"))
    (plugin_dir / "expires_in").write_text("-30")  # already expired
    block = _block(dev_cluster, _plugin(plugin_dir), plugin_dir)
    with block.get_client() as api:
        assert _calls(plugin_dir) == 1
        (plugin_dir / "token").write_text(_token(dev_cluster, ns, "second"))
        assert _whoami(api) == f"system:serviceaccount:{ns}:second"  # refreshed first
        assert _calls(plugin_dir) == 2
        # Near expiry: kubernetes' client refreshes 5 minutes ahead. A token valid for
        # 5 min + 3 s is used as is, then refreshed once those 3 s have passed.
        (plugin_dir / "expires_in").write_text("303")
        assert _whoami(api) == f"system:serviceaccount:{ns}:second"
        calls = _calls(plugin_dir)
        assert calls == 3
        assert _whoami(api) == f"system:serviceaccount:{ns}:second"
        assert _calls(plugin_dir) == calls  # still valid: no run
        (plugin_dir / "token").write_text(_token(dev_cluster, ns, "third"))
        time.sleep(4)
        assert _whoami(api) == f"system:serviceaccount:{ns}:third"
        assert _calls(plugin_dir) == calls + 1
    # Without expirationTimestamp the credential is kept for the client's life.
    (plugin_dir / "expires_in").write_text("")
    before = _calls(plugin_dir)
    with block.get_client() as api:
        _whoami(api), _whoami(api)
        assert _calls(plugin_dir) == before + 1


@pytest.mark.k8s
def test_a_plugin_failing_when_refreshing_is_an_error_not_an_anonymous_request(
    dev_cluster, plugin_dir
):
    ns = dev_cluster.namespace("exec-fail")
    (plugin_dir / "token").write_text(_token(dev_cluster, ns, "a"))
    (plugin_dir / "expires_in").write_text("-1")
    block = _block(dev_cluster, _plugin(plugin_dir), plugin_dir)
    mark = dev_cluster.audit_mark()
    with block.get_client() as api:
        (plugin_dir / "mode").write_text("fail")
        with pytest.raises(Exception, match="exited with 3: token expired: run `cloud login`"
                           ) as raised:
            _whoami(api)
    told = translate_error(raised.value, cluster="eks", action="read the server version")
    assert told.message.startswith("cluster 'eks': read the server version: kubeconfig user "
                                   "'cloud-user': exec credential plugin ")
    assert "run the plugin by hand" in told.hint
    assert not [e for e in dev_cluster.audit_events(mark)
                if e.get("user", {}).get("username") == "system:anonymous"]


@pytest.mark.parametrize(("mode", "message"), [
    ("fail", "kubeconfig user 'cloud-user': exec credential plugin .* exited with 3: "
             "token expired: run `cloud login`"),
    ("garbage", "printed no JSON ExecCredential"),
    ("notoken", "gave neither a token nor a client certificate and key"),
    ("badtime", "expirationTimestamp that is no RFC 3339 time"),
    ("hang", "ran past 2 s"),
])
def test_plugin_failures_are_errors_naming_the_user(dev_cluster, plugin_dir, monkeypatch,
                                                    mode, message):
    (plugin_dir / "mode").write_text(mode)
    monkeypatch.setenv(EXEC_TIMEOUT_ENV, "2")
    block = _block(dev_cluster, _plugin(plugin_dir), plugin_dir)
    started = time.monotonic()
    with pytest.raises(StepFailed, match=message):
        block.get_client()
    assert time.monotonic() - started < 30


def test_hostile_plugin_settings_are_refused_before_running(dev_cluster, plugin_dir):
    command = _plugin(plugin_dir)
    for extra, message in (({"interactiveMode": "Always"}, "needs a terminal"),
                           ({"apiVersion": "client.authentication.k8s.io/v1alpha1"},
                            "has apiVersion"),
                           ({"args": [{"$(id)": 1}]}, "args is not a list of strings"),
                           ({"env": [{"name": "LD_PRELOAD", "value": "/x.so"}]},
                            "its env sets LD_PRELOAD")):
        with pytest.raises(StepFailed, match=message):
            _block(dev_cluster, command, plugin_dir, **extra).get_client()
    assert _calls(plugin_dir) == 0


def test_the_expiry_semantics_match_the_documented_skew():
    from kubernetes.config.kube_config import EXPIRY_SKEW_PREVENTION_DELAY, _is_expired

    assert EXPIRY_SKEW_PREVENTION_DELAY == timedelta(minutes=5)  # docs/security.md says so
    now = datetime.now(UTC)
    assert _is_expired(now + timedelta(minutes=4)) and not _is_expired(now + timedelta(minutes=6))
