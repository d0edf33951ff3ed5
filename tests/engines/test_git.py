"""The git adapter against real repositories: git http-backend behind a Basic-auth loopback
server (tests/fixtures_git.py) and the test sshd; plus its pure parts (URLs, refs)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from fixtures_git import GitHttpServer, git, make_repo, ssh_url

from ansflow.engines.git import (
    CheckoutOptions,
    GitAuthError,
    GitCredentials,
    GitError,
    GitRefNotFound,
    RemoteRefs,
    Resolved,
    check_ref_text,
    checkout,
    ls_remote,
    parse_ls_remote,
    parse_remote,
    public_url,
    resolve_ref,
)

A, B, C = "a" * 40, "b" * 40, "c" * 40


# -- pure parts ------------------------------------------------------------------------------

@pytest.mark.parametrize("url, scheme, host, port", [
    ("https://git.example.com/team/app.git", "https", "git.example.com", None),
    ("http://127.0.0.1:8080/app.git", "http", "127.0.0.1", 8080),
    ("ssh://git@host:2222/srv/app.git", "ssh", "host", 2222),
    ("git@github.com:team/app.git", "ssh", "github.com", None),
    ("/srv/git/app.git", "file", "", None),
    ("file:///srv/git/app.git", "file", "", None),
])
def test_urls_taken_apart(url, scheme, host, port):
    remote = parse_remote(url)
    assert (remote.scheme, remote.host, remote.port) == (scheme, host, port)


@pytest.mark.parametrize("url, said", [
    ("https://user:hunter2@example.com/x.git", "password"),
    ("-uhttps://example.com/x.git", "starts with '-'"),
    ("--upload-pack=touch /tmp/pwned", "starts with '-'"),
    ("ext::sh -c touch% /tmp/pwned", "space or a control"),
    ("ext::sh", "remote helper"),
    ("fd::17", "remote helper"),
    ("https://example.com/x.git\n", "control"),
    ("https://exa\x00mple.com/x.git", "control"),
    ("https://example.com/\x1b[31mred", "control"),
    ("ftp://example.com/x.git", "not supported"),
    ("https:///x.git", "no host"),
    ("x" * 3000, "longer than 2048"),
    ("", "empty"),
    ("relative/path", "not a repository URL"),
])
def test_hostile_urls_refused(url, said):
    with pytest.raises(GitError) as info:
        parse_remote(url)
    assert said in str(info.value)
    assert "hunter2" not in str(info.value)


def test_public_url_drops_query_and_keeps_user():
    assert public_url("https://bot@example.com:8443/a.git?x=1#f") == \
        "https://bot@example.com:8443/a.git"


@pytest.mark.parametrize("ref", ["main", "release/1.2", "refs/heads/feature/x", "v1.0.0", A])
def test_good_refs(ref):
    assert check_ref_text(ref) is None


@pytest.mark.parametrize("ref", ["-f", "a..b", "x@{1}", "a b", "a\nb", "a\x00b", "a:b", "a~1",
                                 "a^", "*", "a/", "a.lock", "x" * 2000, "", "a//b",
                                 "$(touch /tmp/pwned)", "{{ secrets.x }}"])
def test_hostile_refs_refused(ref):
    assert check_ref_text(ref)


def _refs() -> RemoteRefs:
    return parse_ls_remote([
        "ref: refs/heads/main\tHEAD", f"{A}\tHEAD", f"{A}\trefs/heads/main",
        f"{B}\trefs/heads/maint", f"{B}\trefs/heads/release/1.x", f"{C}\trefs/tags/v1",
        f"{A}\trefs/tags/v1^{{}}", f"{B}\trefs/tags/main", "garbage line",
    ])


def test_ls_remote_output_parsed_with_peeled_tags():
    refs = _refs()
    assert refs.head == "refs/heads/main"
    assert refs.refs["refs/tags/v1"] == A  # the commit an annotated tag points at
    assert refs.branches == ["main", "maint", "release/1.x"]
    assert refs.tags == ["main", "v1"]


@pytest.mark.parametrize("wanted, commit, ref", [
    (None, A, "refs/heads/main"),
    ("", A, "refs/heads/main"),
    ("main", A, "refs/heads/main"),  # a branch before a tag of the same name
    ("refs/tags/main", B, "refs/tags/main"),
    ("v1", A, "refs/tags/v1"),
    ("release/1.x", B, "refs/heads/release/1.x"),
    (A, A, None),
    (A.upper(), A, None),
    ("ccccccc", None, None),  # not a tip: refused below
])
def test_resolve(wanted, commit, ref):
    if commit is None:
        with pytest.raises(GitRefNotFound):
            resolve_ref(_refs(), wanted)
        return
    target = resolve_ref(_refs(), wanted)
    assert (target.commit, target.ref) == (commit, ref)


def test_sha_at_no_tip_is_known_only_once_fetched():
    assert resolve_ref(_refs(), "d" * 40).exact is False
    assert resolve_ref(_refs(), A).exact is True


def test_missing_ref_names_the_closest():
    with pytest.raises(GitRefNotFound) as info:
        resolve_ref(_refs(), "mian", "https://example.com/app.git")
    text = str(info.value)
    assert "'mian' does not exist in https://example.com/app.git" in text
    assert "closest refs: main, maint" in text


def test_missing_ref_far_from_all_lists_some():
    with pytest.raises(GitRefNotFound) as info:
        resolve_ref(_refs(), "zzzzzzzzzz")
    assert "its refs: main, maint, release/1.x, v1" in str(info.value)


def test_abbreviated_sha_of_a_tip():
    assert resolve_ref(_refs(), "bbbbbbb").commit == B


# -- real repositories over HTTP -------------------------------------------------------------

@pytest.fixture
def creds(git_http) -> GitCredentials:
    return GitCredentials(username=git_http.user, token=git_http.token)


class ProcWatch:
    """Reads every process's command line and environment while running, looking for a
    value: the token must never be in either."""

    def __init__(self, needle: str) -> None:
        self.needle = needle.encode()
        self.hits: list[str] = []
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                for name in ("cmdline", "environ"):
                    try:
                        data = Path(f"/proc/{pid}/{name}").read_bytes()
                    except OSError:
                        continue
                    self.seen += 1
                    if self.needle in data:
                        self.hits.append(f"{pid}/{name}: {data[:200]!r}")
            time.sleep(0.002)


def _files_holding(root: Path, needle: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(str(path))
    return found


def test_token_clone_shallow(git_http, new_repo, creds, tmp_path, monkeypatch):
    repo = new_repo({"app.py": "print('hi')\n"})
    for i in range(3):
        repo.commit({f"f{i}.txt": str(i)}, f"commit {i}")
    shim = tmp_path / "bin"
    shim.mkdir()
    record = tmp_path / "argv.log"
    for program in ("git", "ssh"):
        real = subprocess.run(["which", program], capture_output=True, text=True).stdout.strip()
        (shim / program).write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {record}\n'
                                    f'env >> {record}\nexec {real} "$@"\n')
        (shim / program).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    logged: list[str] = []
    with ProcWatch(git_http.token) as watch:
        refs = ls_remote(git_http.url(repo.bare.stem), creds)
        target = resolve_ref(refs, "main")
        commit = checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"), target,
                          creds=creds, options=CheckoutOptions(depth=1), emit=logged.append)
    assert watch.seen > 100 and watch.hits == []  # the watcher did look, and found nothing
    head = git("rev-parse", "HEAD", cwd=repo.work)
    assert commit.sha == target.commit == head
    assert commit.message == "commit 2" and commit.author == "Ada Tester <ada@example.test>"
    ws = tmp_path / "ws"
    assert (ws / "f2.txt").read_text() == "2" and (ws / "app.py").exists()
    assert git("rev-list", "--count", "HEAD", cwd=ws) == "1"  # depth 1
    assert (ws / ".git" / "shallow").exists()
    assert git("branch", "--show-current", cwd=ws) == "main"
    assert not (ws / ".git" / "hooks").exists() or list((ws / ".git" / "hooks").iterdir()) == []
    # The token is nowhere: not in the checkout (.git/config included), argv, environment
    # or log lines; the private folder with the helper and token file is gone.
    assert _files_holding(ws, git_http.token) == []
    assert "extraheader" not in (ws / ".git" / "config").read_text().lower()
    assert git_http.token not in record.read_text() and "git" in record.read_text()
    assert all(git_http.token not in line for line in logged)
    assert list((tmp_path / "tmp").iterdir()) == []
    # The server saw the credentials: the first request of each exchange without, then with.
    assert {r.user for r in git_http.authorized()} == {"ci"}


def test_wrong_token_refused_once(git_http, new_repo, tmp_path):
    repo = new_repo()
    before = len(git_http.authorized())
    wrong = GitCredentials(username="ci", token="not-the-token")
    started = time.monotonic()
    with pytest.raises(GitAuthError) as info:
        ls_remote(git_http.url(repo.bare.stem), wrong)
    assert time.monotonic() - started < 20
    assert "refused the credentials (the token was answered with HTTP 401" in str(info.value)
    assert "not-the-token" not in str(info.value)
    attempts = git_http.authorized()[before:]
    assert len(attempts) == 1 and attempts[0].user is None  # one try, no retry loop
    with pytest.raises(GitAuthError):
        checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"),
                 Resolved(git("rev-parse", "HEAD", cwd=repo.work), "refs/heads/main"),
                 creds=wrong)


def test_no_credentials_on_a_private_repository(git_http, new_repo):
    repo = new_repo()
    with pytest.raises(GitAuthError, match="name a GitCredentials block"):
        ls_remote(git_http.url(repo.bare.stem))


def test_the_token_goes_with_the_first_request(git_http, new_repo, creds, tmp_path):
    """No 401 round per git process: 2 requests to list the refs, 2 to fetch (as many as
    one `git clone`)."""
    repo = new_repo()
    before = len(git_http.requests)
    target = resolve_ref(ls_remote(git_http.url(repo.bare.stem), creds), None)
    checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"), target, creds=creds)
    made = git_http.requests[before:]
    assert len(made) == 4 and all(r.user == "ci" for r in made)


def test_missing_ref_fails_naming_the_closest(git_http, new_repo, creds):
    repo = new_repo()
    repo.commit({"x": "1"}, "on develop", branch="develop")
    refs = ls_remote(git_http.url(repo.bare.stem), creds)
    with pytest.raises(GitRefNotFound) as info:
        resolve_ref(refs, "devlop", git_http.url(repo.bare.stem))
    assert "closest refs: develop" in str(info.value)


def test_commit_not_at_a_tip_and_a_missing_commit(git_http, new_repo, creds, tmp_path):
    repo = new_repo({"v": "1"}, "first")
    first = git("rev-parse", "HEAD", cwd=repo.work)
    repo.commit({"v": "2"}, "second")
    refs = ls_remote(git_http.url(repo.bare.stem), creds)
    target = resolve_ref(refs, first)
    assert target.exact is False
    commit = checkout(git_http.url(repo.bare.stem), str(tmp_path / "a"), target, creds=creds)
    assert commit.sha == first and (tmp_path / "a" / "v").read_text() == "1"
    assert commit.branch == "" and commit.ref is None
    with pytest.raises(GitRefNotFound) as info:
        checkout(git_http.url(repo.bare.stem), str(tmp_path / "b"),
                 resolve_ref(refs, "e" * 40), creds=creds)
    assert f"the commit {'e' * 40} is not in" in str(info.value)


def test_annotated_tag_and_full_history(git_http, new_repo, creds, tmp_path):
    repo = new_repo({"v": "1"}, "first")
    tagged = repo.tag("v1.0", "release 1.0")
    repo.commit({"v": "2"}, "after the tag")
    refs = ls_remote(git_http.url(repo.bare.stem), creds)
    target = resolve_ref(refs, "v1.0")
    assert target.commit == tagged and target.tag == "v1.0"
    commit = checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"), target, creds=creds,
                      options=CheckoutOptions(depth=None))
    assert commit.tag == "v1.0" and (tmp_path / "ws" / "v").read_text() == "1"
    assert not (tmp_path / "ws" / ".git" / "shallow").exists()


def test_checkout_refuses_a_folder_with_files(git_http, new_repo, creds, tmp_path):
    repo = new_repo()
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "keep.txt").write_text("mine")
    with pytest.raises(GitError, match="not empty"):
        checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"),
                 Resolved(git("rev-parse", "HEAD", cwd=repo.work), "refs/heads/main"),
                 creds=creds)
    assert (tmp_path / "ws" / "keep.txt").read_text() == "mine"


HOSTILE_MESSAGE = ("Fix {{ secrets.token }} and {% raw %}x\n\n$(touch /tmp/ansflow-git-pwned) "
                   "`id` ${HOME}\n\x1b[31mred\x1b[0m \x07bell; rm -rf / #")


def test_hostile_commit_message_is_plain_data(git_http, new_repo, creds, tmp_path):
    repo = new_repo({"a": "1"}, HOSTILE_MESSAGE)
    lines: list[str] = []
    commit = checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"),
                      resolve_ref(ls_remote(git_http.url(repo.bare.stem), creds), None),
                      creds=creds, emit=lines.append)
    assert "\x1b" not in commit.message and "\x07" not in commit.message  # controls dropped
    assert "{{ secrets.token }}" in commit.message
    assert "$(touch /tmp/ansflow-git-pwned)" in commit.message
    assert commit.message.count("\n") == 3  # lines kept
    assert "red" in commit.message
    assert not Path("/tmp/ansflow-git-pwned").exists()


def test_token_not_sent_to_another_host(git_http, new_repo, creds, tmp_path, git_root):
    """A submodule on another host (here: another port) gets no credentials: the helper
    answers only for the source's own scheme and host."""
    other = GitHttpServer(root=git_root, user="ci", token=git_http.token)
    other.start()
    try:
        sub = new_repo({"lib.txt": "sub\n"}, "sub first", name=f"pub{os.getpid()}")
        other.public.add(sub.bare.stem)
        repo = new_repo({"main.txt": "top\n"})
        git("-c", "protocol.file.allow=always", "submodule", "add", "-q",
            other.url(sub.bare.stem), "vendor/lib", cwd=repo.work)
        repo.commit({}, "add a submodule on another host")
        target = resolve_ref(ls_remote(git_http.url(repo.bare.stem), creds), "main")
        checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"), target, creds=creds,
                 options=CheckoutOptions(depth=1, submodules=True))
        assert (tmp_path / "ws" / "vendor" / "lib" / "lib.txt").read_text() == "sub\n"
        assert other.requests and other.authorized() == []
        assert _files_holding(tmp_path / "ws", git_http.token) == []
    finally:
        other.stop()


def test_submodules_recursive_same_host(git_http, new_repo, creds, tmp_path):
    leaf = new_repo({"leaf.txt": "leaf\n"}, "leaf")
    middle = new_repo({"middle.txt": "middle\n"}, "middle")
    auth = f"http://{git_http.user}:{git_http.token}@127.0.0.1:{git_http.port}"
    # Made with the token in the URL by the test's own git (the fixture's author side).
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q",
        git_http.url(leaf.bare.stem), "leaf", cwd=middle.work,
        env={"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{auth}/.insteadOf",
             "GIT_CONFIG_VALUE_0": f"http://127.0.0.1:{git_http.port}/"})
    middle.commit({}, "add leaf")
    top = new_repo({"top.txt": "top\n"}, "top")
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q",
        git_http.url(middle.bare.stem), "middle", cwd=top.work,
        env={"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{auth}/.insteadOf",
             "GIT_CONFIG_VALUE_0": f"http://127.0.0.1:{git_http.port}/"})
    top.commit({}, "add middle")
    target = resolve_ref(ls_remote(git_http.url(top.bare.stem), creds), "main")
    ws = tmp_path / "ws"
    checkout(git_http.url(top.bare.stem), str(ws), target, creds=creds,
             options=CheckoutOptions(depth=1, submodules="recursive"))
    assert (ws / "middle" / "middle.txt").read_text() == "middle\n"
    assert (ws / "middle" / "leaf" / "leaf.txt").read_text() == "leaf\n"
    assert _files_holding(ws, git_http.token) == []
    # Without submodules: the folders stay empty.
    checkout(git_http.url(top.bare.stem), str(tmp_path / "flat"), target, creds=creds)
    assert list((tmp_path / "flat" / "middle").iterdir()) == []


def test_plain_http_token_only_on_loopback(tmp_path):
    with pytest.raises(GitError, match="plain http"):
        ls_remote("http://git.example.com/app.git", GitCredentials(username="u", token="t"))


def test_lfs_without_git_lfs_is_a_clear_failure(git_http, new_repo, creds, tmp_path,
                                                 monkeypatch):
    if subprocess.run(["sh", "-c", "command -v git-lfs"], capture_output=True).returncode == 0:
        pytest.skip("git-lfs is installed here")
    repo = new_repo()
    target = resolve_ref(ls_remote(git_http.url(repo.bare.stem), creds), None)
    with pytest.raises(GitError, match="git-lfs"):
        checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"), target, creds=creds,
                 options=CheckoutOptions(lfs=True))


# -- over SSH (the test sshd) ----------------------------------------------------------------

def _ssh_creds(sshd, **overrides) -> GitCredentials:
    values = dict(private_key=sshd.key.read_text(), known_hosts=(sshd.host_key,))
    values.update(overrides)
    return GitCredentials(**values)


def test_ssh_key_clone(sshd, git_root, tmp_path, monkeypatch):
    repo = make_repo(git_root, f"ssh{os.getpid()}", {"over.txt": "ssh\n"}, "over ssh")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    url = ssh_url(sshd, repo)
    creds = _ssh_creds(sshd)
    with ProcWatch("PRIVATE KEY") as watch:
        target = resolve_ref(ls_remote(url, creds), "main")
        commit = checkout(url, str(tmp_path / "ws"), target, creds=creds,
                          options=CheckoutOptions(depth=1))
    assert watch.hits == []
    assert commit.message == "over ssh" and (tmp_path / "ws" / "over.txt").read_text() == "ssh\n"
    assert _files_holding(tmp_path / "ws", "PRIVATE KEY") == []
    assert list((tmp_path / "tmp").iterdir()) == []  # key and known_hosts removed


def test_ssh_wrong_host_key_refused(sshd, git_root, tmp_path):
    from fixtures_ssh import other_key

    repo = make_repo(git_root, f"sshhk{os.getpid()}")
    wrong = Path(str(other_key(tmp_path)) + ".pub").read_text()
    started = time.monotonic()
    with pytest.raises(GitAuthError) as info:
        ls_remote(ssh_url(sshd, repo), _ssh_creds(sshd, known_hosts=(wrong,)))
    assert "host key" in str(info.value)
    assert time.monotonic() - started < 30


def test_ssh_wrong_client_key_refused(sshd, git_root, tmp_path):
    from fixtures_ssh import other_key

    repo = make_repo(git_root, f"sshck{os.getpid()}")
    key = other_key(tmp_path).read_text()
    with pytest.raises(GitAuthError) as info:
        ls_remote(ssh_url(sshd, repo), _ssh_creds(sshd, private_key=key))
    assert "refused the credentials" in str(info.value)
    assert "PRIVATE KEY" not in str(info.value)


@pytest.mark.parametrize("stderr, auth", [
    ("fatal: remote error: upload-pack: not our ref 4013abcd4030", False),
    ("fatal: unable to access 'x': The requested URL returned error: 403", True),
    ("git@h: Permission denied (publickey).", True),
    ("fatal: could not read Username for 'https://h': terminal prompts disabled", True),
])
def test_refusals_told_apart_from_other_failures(stderr, auth):
    from ansflow.engines.git import _failure, _Result

    error = _failure("cannot list", _Result(128, [], [stderr]), parse_remote("https://h/x"))
    assert isinstance(error, GitAuthError) is auth


def test_a_private_folder_path_with_spaces(git_http, new_repo, creds, tmp_path, monkeypatch):
    spaced = tmp_path / "tmp dir with 'quotes' and spaces"
    spaced.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spaced))
    repo = new_repo({"a.txt": "x"})
    target = resolve_ref(ls_remote(git_http.url(repo.bare.stem), creds), None)
    checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"), target, creds=creds)
    assert (tmp_path / "ws" / "a.txt").read_text() == "x"
    assert list(spaced.iterdir()) == []


@pytest.mark.parametrize("sub_url", ["ext::sh -c touch% /tmp/ansflow-ext-pwned",
                                     "file:///tmp/ansflow-ext-pwned-repo",
                                     "--upload-pack=touch /tmp/ansflow-ext-pwned"])
def test_a_hostile_submodule_url_runs_nothing(git_http, new_repo, creds, tmp_path, sub_url):
    repo = new_repo({"a.txt": "x"})
    (repo.work / ".gitmodules").write_text(
        f'[submodule "evil"]\n\tpath = vendor/evil\n\turl = {sub_url}\n')
    git("add", ".gitmodules", cwd=repo.work)
    git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},vendor/evil", cwd=repo.work)
    git("commit", "-q", "-m", "a hostile submodule", cwd=repo.work)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=repo.work)
    assert "vendor/evil" in git("ls-tree", "-r", "HEAD", cwd=repo.work)
    target = resolve_ref(ls_remote(git_http.url(repo.bare.stem), creds), None)
    with pytest.raises(GitError):
        checkout(git_http.url(repo.bare.stem), str(tmp_path / "ws"), target, creds=creds,
                 options=CheckoutOptions(submodules=True))
    assert not Path("/tmp/ansflow-ext-pwned").exists()
