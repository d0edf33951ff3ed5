"""Filling a workspace from the pipeline's folder, against hostile folders: links out of it,
`..` in .ansflowignore, FIFOs, sockets and devices, a huge file count, odd names, a root
that is a link. Real files, real copies."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from ansflow.workspace_copy import CopyError, IgnoreRules, fill_from_folder
from ansflow.workspaces import (
    WorkspaceError,
    check_run_id,
    finish_workspace,
    open_workspace,
)


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "folder"
    path.mkdir()
    return path


@pytest.fixture
def dest(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    return path


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: file contents, 'dir', or 'link -> target'."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(dirpath, name)
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = f"link -> {os.readlink(full)}"
            elif full.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = full.read_text(errors="surrogateescape")
    return out


def test_files_folders_modes_and_times_are_copied(src, dest):
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(src / "bin" / "tool", 0o751)
    os.utime(src / "bin" / "tool", (1_000_000_000, 1_000_000_000))
    (src / "empty").write_bytes(b"")
    (src / "big").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    report = fill_from_folder(str(src), str(dest))
    assert (dest / "big").read_bytes() == (src / "big").read_bytes()
    assert (dest / "empty").read_bytes() == b""
    st = os.stat(dest / "bin" / "tool")
    assert stat.S_IMODE(st.st_mode) == 0o751 and st.st_mtime == 1_000_000_000
    assert (report.files, report.dirs, report.skipped_count) == (3, 1, 0)
    assert report.bytes == 3 * 1024 * 1024 + 7 + len("#!/bin/sh\n")


def test_links_out_of_the_folder_are_skipped_and_links_inside_are_kept(src, dest, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("worker's secret")
    (src / "sub").mkdir()
    (src / "sub" / "real").write_text("inside")
    os.symlink(secret, src / "abs-out")
    os.symlink("../secret", src / "rel-out")
    os.symlink("/etc", src / "etc-dir")
    os.symlink("sub", src / "sub-link")
    os.symlink("sub-link/../../secret", src / "chain-out")  # out through an inner link
    os.symlink(src / "sub" / "real", src / "abs-in")  # absolute, but inside
    os.symlink("../sub/real", src / "sub" / "up-in")
    os.symlink("nowhere", src / "dangling-in")
    os.symlink("../../nowhere", src / "dangling-out")
    report = fill_from_folder(str(src), str(dest))
    got = tree(dest)
    assert got == {"sub": "dir", "sub/real": "inside", "sub/up-in": "link -> ../sub/real",
                   "sub-link": "link -> sub", "abs-in": "link -> sub/real",
                   "dangling-in": "link -> nowhere"}, got
    skipped = {p: why for p, why in report.skipped}
    assert set(skipped) == {"abs-out", "rel-out", "etc-dir", "chain-out", "dangling-out"}
    assert all(why == "a link out of the pipeline's folder: not copied"
               for why in skipped.values())
    assert (dest / "abs-in").read_text() == "inside"  # reads the workspace's copy
    assert os.path.realpath(dest / "abs-in") == str((dest / "sub" / "real").resolve())


def test_dotdot_in_ansflowignore_reaches_nothing_outside(src, dest, tmp_path):
    (tmp_path / "outside.txt").write_text("outside")
    (src / "a").mkdir()
    (src / "a" / "keep.txt").write_text("k")
    (src / "a" / "x.txt").write_text("x")
    (src / ".ansflowignore").write_text("../outside.txt\n!../outside.txt\n!../../etc/passwd\n"
                                        "a/../a/x.txt\n/../a/keep.txt\n..\n")
    report = fill_from_folder(str(src), str(dest))
    got = tree(dest)
    # `..` matches no entry: everything inside is copied, nothing outside appears.
    assert got == {".ansflowignore": got[".ansflowignore"], "a": "dir", "a/keep.txt": "k",
                   "a/x.txt": "x"}
    assert report.ignored == 0


def test_ansflowignore_follows_gitignore_rules(src, dest):
    for rel in ("build/out.o", "build/keep.txt", "logs/a.log", "logs/important.log",
                "src/app.py", "src/app.pyc", "src/deep/x.pyc", "top.tmp", "src/top.tmp",
                "docs/build/page", "node_modules/m/i.js", "src/.ansflowignore", "src/gen.txt",
                "src/keep.gen", "space name.txt", "#hash.txt"):
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel != "src/.ansflowignore":
            path.write_text(rel)
    (src / ".ansflowignore").write_text(
        "# a comment\n"
        "/build/\n"          # anchored folder: the top build only
        "!build/keep.txt\n"  # cannot re-include inside an excluded folder (git's rule)
        "*.log\n!important.log\n"
        "**/*.pyc\n"
        "/top.tmp\n"
        "node_modules\n"
        "space\\ name.txt\n"
        "\\#hash.txt\n")
    (src / "src" / ".ansflowignore").write_text("*.txt\n!keep.*\n")
    report = fill_from_folder(str(src), str(dest))
    files = sorted(k for k, v in tree(dest).items() if v != "dir")
    assert files == [".ansflowignore", "docs/build/page", "logs/important.log",
                     "src/.ansflowignore", "src/app.py", "src/keep.gen", "src/top.tmp"], files
    assert report.ignored == 9


def test_fifos_sockets_and_devices_are_skipped_without_hanging(src, dest):
    os.mkfifo(src / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        os.mknod(src / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
        devices = True
    except PermissionError:
        devices = False
    (src / "plain").write_text("p")
    started = time.monotonic()
    report = fill_from_folder(str(src), str(dest))
    sock.close()
    assert time.monotonic() - started < 10
    assert tree(dest) == {"plain": "p"}
    skipped = dict(report.skipped)
    assert skipped["fifo"] == "a FIFO: not copied"
    assert skipped["sock"] == "a socket: not copied"
    if devices:
        assert skipped["dev"] == "a device file: not copied"


def test_odd_names_are_copied_exactly(src, dest):
    names = ["new\nline", "tab\tname", "$(touch PWNED)", "{{ secrets.X }}", "-rf", " lead",
             "quote'\"", "ünï€ode"]
    for name in names:
        (src / name).write_text(name)
    raw = os.fsencode(str(src)) + b"/bad-\xff-utf8"
    with open(raw, "wb") as fh:
        fh.write(b"bytes")
    report = fill_from_folder(str(src), str(dest))
    for name in names:
        assert (dest / name).read_text() == name
    with open(os.fsencode(str(dest)) + b"/bad-\xff-utf8", "rb") as fh:
        assert fh.read() == b"bytes"
    assert report.files == len(names) + 1 and not (dest / "PWNED").exists()
    assert not Path("PWNED").exists()


def test_skipped_names_that_are_not_utf8_are_kept_in_the_workspace_record(src, tmp_path):
    from ansflow.workspaces import read_meta

    os.mkfifo(os.fsencode(str(src)) + b"/fifo-\xff\n")
    root = tmp_path / "root"
    ws = open_workspace("odd-run", "p", lambda d: {"copy": fill_from_folder(
        str(src), str(d)).as_dict()}, root=root)
    finish_workspace(ws, "failed", keep=60)
    meta = read_meta(root / "odd-run")
    assert meta is not None and meta["state"] == "kept"
    assert meta["facts"]["copy"]["skipped_first"] == [
        {"path": os.fsdecode(b"fifo-\xff\n"), "why": "a FIFO: not copied"}]
    again = open_workspace("odd-run", "p", lambda d: None, root=root)
    assert again.reused and again.facts == meta["facts"]
    finish_workspace(again, "completed")


def test_a_huge_file_count_is_copied_and_a_limit_refuses_clearly(src, dest, tmp_path,
                                                                 monkeypatch):
    for d in range(50):
        sub = src / f"d{d}"
        sub.mkdir()
        for f in range(400):
            (sub / f"f{f}").write_bytes(b"x")
    started = time.monotonic()
    report = fill_from_folder(str(src), str(dest))
    assert report.files == 20_000 and report.dirs == 50
    assert time.monotonic() - started < 60
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MAX_FILES", "1000")
    root = tmp_path / "root"
    with pytest.raises(WorkspaceError, match=r"more than 1000 entries"):
        open_workspace("big-run", "p", _folder(src), root=root)
    # The partial copy is gone; only the run's lock stays for the cleanup.
    assert sorted(os.listdir(root / "big-run")) == ["lock"]


def _folder(src: Path):
    def fill(d: Path) -> None:
        try:
            fill_from_folder(str(src), str(d))
        except CopyError as exc:
            raise WorkspaceError(str(exc)) from None
    return fill


def test_a_deep_tree_and_a_huge_ignore_file_are_refused(src, dest, tmp_path):
    deep = src
    for _ in range(210):
        deep = deep / "d"
    os.makedirs(deep)
    with pytest.raises(CopyError, match="nested deeper than 200 levels"):
        fill_from_folder(str(src), str(dest))
    other = tmp_path / "other"
    other.mkdir()
    (other / ".ansflowignore").write_text("x\n" * 600_000)
    (tmp_path / "ws2").mkdir()
    with pytest.raises(CopyError, match="larger than 1024 KiB"):
        fill_from_folder(str(other), str(tmp_path / "ws2"))


def test_an_ansflowignore_that_is_a_link_is_not_read(src, dest, tmp_path):
    (tmp_path / "rules").write_text("*\n")
    os.symlink(tmp_path / "rules", src / ".ansflowignore")
    (src / "f").write_text("f")
    report = fill_from_folder(str(src), str(dest))
    assert tree(dest) == {"f": "f"}
    assert [why for p, why in report.skipped if p == ".ansflowignore"] == [
        "not used as ignore rules: Too many levels of symbolic links",
        "a link out of the pipeline's folder: not copied"]


def test_a_workspace_root_that_is_a_link_is_followed_once(src, tmp_path, monkeypatch):
    from ansflow.workspaces import workspaces_root

    real = tmp_path / "real-root"
    real.mkdir()
    os.symlink(real, tmp_path / "link-root")
    monkeypatch.setenv("ANSFLOW_WORKSPACES", str(tmp_path / "link-root"))
    assert workspaces_root() == real
    (src / "f").write_text("f")
    ws = open_workspace("linked-root-run", "p", _folder(src))
    assert ws.path == real / "linked-root-run" / "workspace"
    assert (ws.path / "f").read_text() == "f"
    finish_workspace(ws, "completed")
    assert os.path.islink(tmp_path / "link-root") and list(real.iterdir()) == []


def test_a_run_dir_replaced_by_a_link_is_refused(src, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, root / "evil-run")
    with pytest.raises(WorkspaceError, match="is not a directory of ansflow's"):
        open_workspace("evil-run", "p", _folder(src), root=root)
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 65, "a\nb", "a\0b",
                                 "{{ x }}", "$(id)"])
def test_bad_run_ids_are_refused(bad):
    with pytest.raises(WorkspaceError, match="is not a run id"):
        check_run_id(bad)


def test_ignore_rules_are_per_folder_deepest_first():
    rules = IgnoreRules().below("", "*.txt\n").below("sub", "!keep.txt\n")
    assert rules.ignored("a.txt", False)
    assert not rules.ignored("sub/keep.txt", False)
    assert rules.ignored("sub/other.txt", False)
    assert not rules.ignored("subx/keep.py", False)


def test_a_filler_failing_with_an_os_error_is_a_clear_workspace_error(tmp_path):
    root = tmp_path / "root"

    def fill(dest: Path) -> None:
        (dest / "partial").write_text("half")
        raise PermissionError(13, "Permission denied")

    with pytest.raises(WorkspaceError, match=r"could not be made in .*: Permission denied"):
        open_workspace("os-error", "p", fill, root=root)
    assert sorted(os.listdir(root / "os-error")) == ["lock"]  # the partial copy is gone
    with pytest.raises(CopyError, match=r"the pipeline's folder .*/missing cannot be read"):
        fill_from_folder(str(tmp_path / "missing"), str(tmp_path))


def test_a_large_copy_suggests_an_ansflowignore(src, dest, monkeypatch, caplog):
    import logging

    from ansflow.flows import run_workspace

    for n in range(3):
        (src / f"f{n}").write_text("x")
    monkeypatch.setattr(run_workspace, "LARGE_FILES", 2)
    logger = logging.getLogger("ws-test")
    with caplog.at_level(logging.INFO, logger="ws-test"):
        facts = run_workspace.folder_filler(str(src), logger)(dest)
    assert facts["copy"]["files"] == 3 and facts["copied_from"] == str(src)
    assert any(r.levelno == logging.WARNING and "every run copies 3 files" in r.getMessage()
               and ".ansflowignore" in r.getMessage() for r in caplog.records)
