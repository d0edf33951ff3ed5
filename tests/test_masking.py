"""Secret masking (ansflow/masking.py, the Masker of ansflow/runtime/base.py): pure logic.

The end-to-end cases (real processes, containers, the Prefect server's logs) are in
tests/flows/test_masking_run.py.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import threading
from urllib.parse import quote, quote_plus

import pytest

from ansflow.engines.lines import LineSplitter
from ansflow.runtime.base import Masker, StepContext

SECRET = 'p@ss/w0rd+"x y$z'
PEM = ("-----BEGIN PRIVATE KEY-----\n"
       "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
       "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
       "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n"
       "-----END PRIVATE KEY-----\n")


def test_the_value_is_masked_wherever_it_is_in_a_line():
    m = Masker(["hunter2-token"])
    assert m("a hunter2-token b hunter2-token") == "a *** b ***"
    assert m("nothing here") == "nothing here"


@pytest.mark.parametrize("prefix", [b"", b"u", b"us", b"user:", b"user:x"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_a_text_containing_the_secret_is_masked_at_every_alignment(prefix, encode):
    m = Masker([SECRET])
    for suffix in (b"", b"!", b"!!", b"-tail-of-text"):
        encoded = encode(prefix + SECRET.encode() + suffix).decode()
        masked = m(encoded)
        assert "***" in masked
        # What is left is only the few characters that mix secret and surrounding bits.
        assert len(masked) - 3 <= len(encode(prefix + suffix)) + 4, (prefix, suffix, masked)


@pytest.mark.parametrize("form", [
    quote(SECRET, safe=""), quote(SECRET), quote_plus(SECRET), json.dumps(SECRET),
    json.dumps({"password": SECRET}), shlex.quote(SECRET),
    SECRET.replace("$", "\\$").replace('"', '\\"'),
])
def test_url_json_and_shell_forms_are_masked(form):
    masked = Masker([SECRET])(f"before {form} after")
    assert "***" in masked and "w0rd" not in masked


@pytest.mark.parametrize("secret", [SECRET, "it's-a-secret", "tab\tand\\back"])
def test_what_bash_printf_q_and_set_x_print_is_masked(secret):
    # bash's `printf %q` and `set -x` traces quote a value with backslashes / quotes.
    out = subprocess.run(["bash", "-c", 'printf "%q\\n" "$S"; set -x; : "$S"'],
                         env={"S": secret, "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, check=True)
    masker = Masker([secret])
    for line in (out.stdout + out.stderr).splitlines():
        assert masker(line) != line, line


def test_a_multi_line_secret_is_masked_line_by_line_and_whole():
    m = Masker([PEM])
    body = PEM.splitlines()[1]
    assert m(body) == "***"
    assert m(f"key: {body}") == "key: ***"
    whole = m(f"start\n{PEM}end")
    assert "MIIE" not in whole and "MzEf" not in whole and whole.startswith("start\n")
    assert "MIIE" not in m(json.dumps({"key": PEM}))  # escaped newlines
    assert "MIIE" not in m(base64.b64encode(PEM.encode()).decode())  # kubeconfig *-data
    # Short lines of a multi-line secret are not masked on their own (they are ordinary).
    assert Masker(["{\n  \"a\": 1,\n  \"token\": \"abcdefgh12\"\n}"])("{") == "{"


def test_a_secret_containing_another_is_masked_whole():
    m = Masker(["abcd", "abcdefgh"])
    assert m("xabcdefghx") == "x***x"


def test_short_values_are_not_masked_and_add_is_idempotent():
    m = Masker(["abc", ""])
    assert not m and m("abc 1") == "abc 1"
    m.add("long-enough")
    m.add("long-enough")
    assert m and m("long-enough") == "***"


def test_add_is_thread_safe():
    m = Masker()
    values = [f"secret-value-{i:04d}" for i in range(100)]

    def add(chunk):
        for v in chunk:
            m.add(v)
            assert m(v) == "***"

    threads = [threading.Thread(target=add, args=(values[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(m(v) == "***" for v in values)


@pytest.mark.parametrize("offset", [0, 1, 8180, 8185, 8190, 8191, 8192, 8193, 16380, 65530])
def test_the_splitter_never_cuts_a_long_line_inside_a_secret(offset):
    secret = "Zq9-secret-value-Zq9"
    m = Masker([secret])
    data = b"x" * offset + secret.encode() + b"y" * 70000 + b"\n" + b"tail"
    s = LineSplitter(masker=m)
    pieces = []
    for i in range(0, len(data), 65536):  # the process runner's read size
        pieces += s.feed(data[i:i + 65536])
    pieces += s.flush()
    assert "".join(pieces[:-1]) == data.decode()[: -len("\ntail")]  # nothing lost
    assert pieces[-1] == "tail"
    assert all(len(p) <= 8192 + len(secret) for p in pieces)
    masked = [m(p) for p in pieces]
    assert not any(secret in p for p in masked)
    assert sum(p.count("***") for p in masked) == 1


def test_the_splitter_sees_a_secret_added_while_it_runs():
    m = Masker()
    s = LineSplitter(max_bytes=16, masker=m)
    m.add("0123456789")
    pieces = s.feed(b"a" * 12 + b"0123456789" + b"b" * 20) + s.flush()
    assert not any("0123456789" in m(p) for p in pieces)


def _ctx(masker, records):
    import logging

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.getMessage()))

    logger = logging.getLogger(f"ansflow.test.mask.{id(records)}")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return StepContext(pipeline="p", run_id="r", build_number=1, step_id="s", step_name="s",
                       stage="t", step_type="command", workspace="/", masker=masker,
                       logger=logger)


def test_add_mask_line_is_not_logged_and_masks_from_then_on():
    records: list = []
    masker = Masker()
    ctx = _ctx(masker, records)
    ctx.emit("before derived-pass-99")
    ctx.emit("::add-mask::derived-pass-99")
    ctx.emit("after derived-pass-99")
    ctx.emit("::add-mask::x1")  # too short: refused with a warning that does not show it
    ctx.emit("::add-mask::not-from-stderr", stream="stderr")
    messages = [m for _, m in records]
    assert messages[0] == "before derived-pass-99"  # nothing is masked retroactively
    assert messages[1] == "after ***"
    assert not any("::add-mask::derived" in m or "x1" in m for m in messages)
    assert records[2][0] == "WARNING" and "add-mask" in records[2][1]
    assert masker("derived-pass-99") == "***"  # for the later steps of the run too
    assert masker("not-from-stderr") == "not-from-stderr"


def test_a_burst_of_lines_is_one_record_masked_with_add_mask_in_order_and_capped():
    records: list = []
    masker = Masker()
    masker.add("known-secret-1")
    ctx = _ctx(masker, records)
    ctx.max_log_bytes = 60
    logged = ctx.emit_lines(["a known-secret-1 b", "before later-pass-42",
                             "::add-mask::later-pass-42", "after later-pass-42",
                             "x" * 20, "past the cap"])
    assert [m for _, m in records][:2] == ["a *** b\nbefore later-pass-42",
                                           "after ***\n" + "x" * 20]
    assert records[2][0] == "WARNING" and "output beyond 60 bytes" in records[2][1]
    assert logged == ["a *** b", "before later-pass-42", "after ***", "x" * 20]
    assert ctx.dropped_lines == 1 and len(records) == 3
    stderr_records: list = []
    other = _ctx(Masker(), stderr_records)
    long = "y" * 9000
    assert other.emit_lines([long, "::add-mask::not-from-stderr"], stream="stderr") == [
        "y" * 8192 + "... [808 chars cut]", "::add-mask::not-from-stderr"]
    assert [level for level, _ in stderr_records] == ["WARNING"]


def test_secret_values_of_cluster_credentials():
    import yaml

    from ansflow.blocks.kubernetes import KubernetesCluster

    key_pem = PEM
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "clusters": [{"name": "k", "cluster": {"server": "https://10.0.0.1:6443"}}],
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
           "users": [{"name": "u", "user": {
               "token": "tok-abcdef-123", "password": "pw-987654",
               "client-key-data": base64.b64encode(key_pem.encode()).decode(),
               "auth-provider": {"config": {"refresh-token": "refresh-xyz-1"}}}}]}
    block = KubernetesCluster(kubeconfig=yaml.safe_dump(doc))
    values = [v for _what, v in block.secret_values()]
    assert {"tok-abcdef-123", "pw-987654", "refresh-xyz-1", key_pem} <= set(values)
    assert "https://10.0.0.1:6443" not in values
    token_block = KubernetesCluster(server="https://h:6443", token="bearer-token-1",
                                    client_certificate="CERT", client_key=key_pem)
    assert {v for _w, v in token_block.secret_values()} == {"bearer-token-1", key_pem}


def test_loading_a_cluster_adds_its_secrets_and_refuses_short_ones():
    from ansflow.blocks.kubernetes import KubernetesCluster
    from ansflow.errors import StepFailed
    from ansflow.runtime.k8s_session import load_cluster

    records: list = []
    ctx = _ctx(Masker(), records)
    ctx.blocks = {"cluster": KubernetesCluster(server="https://h:6443", token="bearer-token-1")}
    load_cluster("prod", ctx)
    assert ctx.masker("Authorization: Bearer bearer-token-1") == "Authorization: Bearer ***"
    ctx.blocks = {"cluster": KubernetesCluster(server="https://h:6443", token="abc")}
    with pytest.raises(StepFailed, match=r"cluster 'prod': its token is 3 character\(s\) long"):
        load_cluster("prod", ctx)


def test_registry_password_is_added_to_the_masker_and_short_ones_refused():
    from ansflow.errors import StepFailed
    from ansflow.runtime.docker_access import DockerRegistryCredentials, resolve_registry

    masker = Masker()
    block = DockerRegistryCredentials(username="u", password="reg-pass-1234",
                                      registry_url="127.0.0.1:5000")
    access = resolve_registry(None, None, block, masker=masker)
    assert access.auth_config()["password"] == "reg-pass-1234"
    assert masker("login reg-pass-1234") == "login ***"
    short = DockerRegistryCredentials(username="u", password="pw", registry_url="r.example")
    with pytest.raises(StepFailed, match="password of the given credentials block is 2 char"):
        resolve_registry(None, None, short, masker=masker)


def test_a_real_process_printing_a_secret_across_cuts_is_masked_by_the_runner():
    from ansflow.engines.process import run_process

    secret = "proc-secret-0123456789"
    masker = Masker([secret])
    lines: list[str] = []
    script = ("pad() { head -c \"$1\" /dev/zero | tr '\\0' x; }; "
              "pad 8190; printf '%s' \"$S\"; pad 100000; echo; pad 65530; printf '%s' \"$S\"")
    outcome = run_process(["sh", "-c", script], cwd="/", masker=masker,
                          env={"S": secret, "PATH": os.environ["PATH"]},
                          emit=lambda line, _stream: lines.append(masker(line)))
    assert outcome.exit_code == 0
    assert sum(len(line) for line in lines) > 170000
    assert not any(secret[:8] in line or secret[-8:] in line for line in lines)
    assert sum(line.count("***") for line in lines) == 2


def test_pod_exec_output_is_cut_around_secrets_too():
    from ansflow.tasks.k8s_exec import LineEmitter

    records: list = []
    ctx = _ctx(Masker(["exec-secret-abcdef"]), records)
    emitter = LineEmitter(ctx)
    data = b"x" * 8185 + b"exec-secret-abcdef" + b"y" * 9000
    for i in range(0, len(data), 1000):  # the websocket's frames
        emitter("stdout", data[i:i + 1000])
    emitter.flush()
    messages = [m for _, m in records]
    assert not any("exec-secret" in m or "abcdef" in m for m in messages)
    assert sum(m.count("***") for m in messages) == 1


def test_artifacts_and_event_payload_use_the_runs_masker():
    from ansflow.flows.publish import summary_markdown, summary_rows

    masker = Masker([PEM])
    masker.add("added-later-by-a-step")
    summary = {"pipeline": "p", "build_number": 1, "run_id": None, "state": "failed",
               "message": "1 step(s) failed: s",
               "steps": [{"id": "s", "name": "s", "type": "command", "state": "failed",
                          "message": f"bad key {json.dumps(PEM)} / added-later-by-a-step",
                          "outputs": {"image": PEM.splitlines()[2]}}]}
    text = summary_markdown(summary, masker) + json.dumps(summary_rows(summary, masker))
    assert "***" in text
    assert not any(line in text for line in PEM.splitlines()[1:-1])
    assert "added-later" not in text


def test_a_secret_longer_than_a_piece_stays_whole_in_one_piece():
    m = Masker(["0123456789abcdef", "cdef-other-secret"])
    data = b"ab" + b"0123456789abcdef" * 3 + b"--cdef-other-secret" + b"z" * 30
    s = LineSplitter(max_bytes=8, masker=m)
    pieces = []
    for byte in data:  # one byte at a time: the worst case for the hold-back
        pieces += s.feed(bytes([byte]))
    pieces += s.flush()
    assert "".join(pieces) == data.decode()
    masked = [m(p) for p in pieces]
    assert not any(c in p for p in masked for c in "0123456789") and "other" not in "".join(masked)
    assert sum(p.count("***") for p in masked) == 4


def test_mask_checked_refuses_the_lot_when_one_secret_is_short():
    from ansflow.errors import StepFailed
    from ansflow.masking import SecretTooShort, mask_checked

    masker = Masker()
    with pytest.raises(SecretTooShort, match=r"^cluster 'c': its key is 2 character\(s\) long"
                                             r".*; nothing was changed$") as caught:
        mask_checked(masker, [("cluster 'c': its token", "long-enough-token"),
                              ("cluster 'c': its key", "ab")], "; nothing was changed")
    assert isinstance(caught.value, StepFailed)
    # Nothing was added: the first, long value is not masked either.
    assert masker("long-enough-token") == "long-enough-token"


def test_mask_checked_adds_every_value_and_only_checks_without_a_masker():
    from ansflow.masking import SecretTooShort, mask_checked

    masker = Masker()
    hostile = "p@ss'; rm -rf / {{ x }}\n../..é"
    mask_checked(masker, [("a", "tok-123456"), ("b", hostile), ("c", None)])
    assert masker("x tok-123456 y") == "x *** y"
    assert "rm -rf" not in masker(f"> {hostile}")
    mask_checked(None, [("secret 'x'", "long-enough")])  # no masker: the check alone
    with pytest.raises(SecretTooShort, match=r"^secret 'x' is 1 character\(s\) long"):
        mask_checked(None, [("secret 'x'", "1")])


def test_a_value_with_lone_surrogates_is_masked_not_a_crash():
    """A value read with surrogateescape (an undecodable byte in an environment variable)
    or holding any other lone surrogate is masked like every other value."""
    masker = Masker()
    masker.add("s3cr\udce9t-value")
    masker.add("abc\ud800defghij")
    assert masker("x s3cr\udce9t-value y") == "x *** y"
    assert masker("abc\ud800defghij") == "***"
    assert masker.straddling(b"x s3cr\xe9t-value", 5) == [(2, 14)]  # the undecodable byte
