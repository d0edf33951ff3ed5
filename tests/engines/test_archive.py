"""Download archives (what a step's pod or SSH host sends back): crafted tar streams built
here, extracted by ansflow.engines.archive into a real directory. Each hostile archive must
leave everything outside the declared download paths untouched."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ansflow.engines.archive import (
    ArchiveRefused,
    BoundedSpool,
    Limits,
    extract,
    member_path,
)

MAKEFILE = b"all:\n\techo the real Makefile\n"


def tar_of(*members: tuple) -> io.BytesIO:
    """A tar stream of (name, kind, payload) members: kind "file" (payload: bytes), "dir",
    "sym" / "hard" (payload: link target), "chr", "fifo"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "file":
                info.size, info.mode = len(payload), 0o4777
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type, info.mode = {"dir": (tarfile.DIRTYPE, 0o755),
                                    "sym": (tarfile.SYMTYPE, 0o777),
                                    "hard": (tarfile.LNKTYPE, 0o644),
                                    "chr": (tarfile.CHRTYPE, 0o666),
                                    "fifo": (tarfile.FIFOTYPE, 0o644)}[kind]
            if kind in ("sym", "hard"):
                info.linkname = payload
            if kind == "chr":
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info)
    buf.seek(0)
    return buf


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace with a Makefile and .git/hooks, beside an `outside` directory."""
    workspace = tmp_path / "ws"
    (workspace / ".git" / "hooks").mkdir(parents=True)
    (workspace / "Makefile").write_bytes(MAKEFILE)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("outside\n")
    return workspace


def untouched(ws: Path, planted: tuple[str, ...] = ()) -> None:
    """Makefile, hooks and `outside` as they were; no link but those the test planted."""
    assert (ws / "Makefile").read_bytes() == MAKEFILE
    assert os.listdir(ws / ".git" / "hooks") == []
    outside = ws.parent / "outside"
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_text() == "outside\n"
    links = [str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_symlink()]
    assert sorted(links) == sorted(planted)


def test_files_and_directories_under_the_declared_paths_are_written(ws):
    done = extract(tar_of(("out", "dir", None), ("out/sub", "dir", None),
                          ("./out/sub/a.txt", "file", b"a"), ("other/b", "file", b"b")),
                   str(ws), ["out", "other/b"], "the pod")
    assert done.files == ["out/sub/a.txt", "other/b"] and done.skipped == []
    assert (ws / "out" / "sub" / "a.txt").read_bytes() == b"a"
    mode = (ws / "out" / "sub" / "a.txt").stat()
    assert stat.S_IMODE(mode.st_mode) == 0o755  # set-id bits and group/other write dropped
    assert mode.st_mtime == 1_600_000_000
    assert (ws / "other" / "b").read_bytes() == b"b"
    untouched(ws)


@pytest.mark.parametrize("name, reason", [
    ("../x", "climbs out with '..'"),
    ("out/../../x", "climbs out with '..'"),
    ("out/../Makefile", "climbs out with '..'"),
    ("/tmp/ansflow-archive-test-abs", "absolute"),
    ("Makefile", "outside the declared download paths"),
    (".git/hooks/pre-commit", "outside the declared download paths"),
    ("outx/f", "outside the declared download paths"),
])
def test_a_name_outside_the_declared_paths_refuses_the_download(ws, name, reason):
    with pytest.raises(ArchiveRefused) as refused:
        extract(tar_of(("out/ok", "file", b"ok"), (name, "file", b"pwned")), str(ws),
                ["out"], "the pod p")
    message = str(refused.value)
    assert message.startswith("download from the pod p refused: member ") and reason in message
    assert "Traceback" not in message
    assert (ws / "out" / "ok").read_bytes() == b"ok"  # what came before, inside `out`
    assert not Path("/tmp/ansflow-archive-test-abs").exists()
    assert not (ws.parent / "x").exists()
    untouched(ws)


def test_a_symlink_to_etc_then_a_file_through_it_writes_no_link(ws):
    done = extract(tar_of(("out/etc", "sym", "/etc"), ("out/etc/ansflow-pwned", "file", b"x"),
                          ("out/up", "sym", "../../outside"),
                          ("out/up/secret", "file", b"pwned")),
                   str(ws), ["out"], "the pod")
    assert done.skipped == [("out/etc", "symbolic link"), ("out/up", "symbolic link")]
    assert "out/etc (symbolic link)" in done.skipped_note()
    assert not Path("/etc/ansflow-pwned").exists()
    # The links were never made: the files landed in real directories of the workspace.
    assert (ws / "out" / "etc").is_dir() and not (ws / "out" / "etc").is_symlink()
    assert (ws / "out" / "up" / "secret").read_bytes() == b"pwned"
    untouched(ws)


def test_a_hardlink_to_outside_is_skipped(ws):
    target = str(ws.parent / "outside" / "secret")
    done = extract(tar_of(("out/h", "hard", target), ("out/h2", "hard", "../Makefile"),
                          ("out/h3", "hard", "/etc/passwd")), str(ws), ["out"], "the pod")
    assert [kind for _, kind in done.skipped] == ["hard link"] * 3
    assert not (ws / "out" / "h").exists() and not (ws / "out" / "h2").exists()
    untouched(ws)


def test_a_symlink_chain_past_path_max_writes_nothing_outside(ws):
    """The shape of the 2025 tarfile bypass: links stacked until the resolved path passes
    PATH_MAX, then a link climbing out through them, then a file through that link."""
    comp = "d" * 200
    members: list[tuple] = []
    steps = "abcdefghijklmnop"
    path = "out"
    for step in steps:
        members += [(f"{path}/{comp}", "dir", None), (f"{path}/{step}", "sym", comp)]
        path = f"{path}/{comp}"
    chain = "out/" + "/".join(steps)
    members += [(f"{chain}/l", "sym", "../" * 40), ("out/escape", "sym", f"{chain}/l/../.."),
                ("out/escape/outside/secret", "file", b"pwned")]
    done = extract(tar_of(*members), str(ws), ["out"], "the pod")
    assert len(done.skipped) == len(steps) + 2
    assert (ws / "out" / "escape" / "outside" / "secret").read_bytes() == b"pwned"
    untouched(ws)


def test_a_symlink_already_in_the_workspace_never_redirects_a_write(ws):
    (ws / "out").symlink_to(ws.parent / "outside")
    with pytest.raises(ArchiveRefused, match=r"'out' in the workspace is a symbolic link"):
        extract(tar_of(("out", "dir", None), ("out/secret", "file", b"pwned")), str(ws),
                ["out"], "the pod")
    with pytest.raises(ArchiveRefused, match=r"'out' in the workspace is a symbolic link"):
        extract(tar_of(("out/secret", "file", b"pwned")), str(ws), ["out"], "the pod")
    (ws / "out").unlink()
    # Deeper: a declared `build/out` whose `build` is a link; and a link at a file's place.
    (ws / "build").symlink_to(ws.parent / "outside")
    with pytest.raises(ArchiveRefused, match=r"'build' in the workspace is a symbolic link"):
        extract(tar_of(("build/out/f", "file", b"pwned")), str(ws), ["build/out"], "the pod")
    (ws / "out").mkdir()
    (ws / "out" / "Makefile").symlink_to("../Makefile")
    os.link(ws.parent / "outside" / "secret", ws / "out" / "secret")
    extract(tar_of(("out/Makefile", "file", b"pwned"), ("out/secret", "file", b"pwned")),
            str(ws), ["out"], "the pod")
    # Replaced, not written through: the link's target and the hard link's file are intact.
    assert not (ws / "out" / "Makefile").is_symlink()
    assert (ws / "out" / "Makefile").read_bytes() == b"pwned"
    assert (ws / "out" / "secret").read_bytes() == b"pwned"
    untouched(ws, planted=("build",))


def test_a_file_where_the_workspace_has_a_directory_or_the_reverse_is_refused(ws):
    (ws / "out" / "d").mkdir(parents=True)
    with pytest.raises(ArchiveRefused, match="is a directory in the workspace"):
        extract(tar_of(("out/d", "file", b"x")), str(ws), ["out"], "the pod")
    (ws / "out" / "f").write_text("file")
    with pytest.raises(ArchiveRefused, match="'out/f' in the workspace is a symbolic link "
                                             "or not a directory"):
        extract(tar_of(("out/f/g", "file", b"x")), str(ws), ["out"], "the pod")


def test_devices_and_fifos_are_skipped(ws):
    done = extract(tar_of(("out/null", "chr", None), ("out/pipe", "fifo", None),
                          ("out/f", "file", b"f")), str(ws), ["out"], "the pod")
    assert done.skipped == [("out/null", "character device"), ("out/pipe", "FIFO")]
    assert os.listdir(ws / "out") == ["f"]


def test_size_and_member_count_are_bounded(ws):
    limits = Limits(max_bytes=1000, max_files=5)
    with pytest.raises(ArchiveRefused, match=r"larger than 1000 bytes in all \(at 'out/b'\)"
                       ) as refused:
        extract(tar_of(("out/a", "file", b"a" * 600), ("out/b", "file", b"b" * 600)),
                str(ws), ["out"], "the pod", limits)
    assert refused.value.hint and "ANSFLOW_DOWNLOAD_MAX_BYTES" in refused.value.hint
    assert str(refused.value).count("hint:") == 1
    assert not (ws / "out" / "b").exists()
    with pytest.raises(ArchiveRefused, match="more than 5 members") as refused:
        extract(tar_of(*[(f"out/{i}", "file", b"") for i in range(6)]), str(ws), ["out"],
                "the pod", limits)
    assert "ANSFLOW_DOWNLOAD_MAX_FILES" in str(refused.value)
    assert not (ws / "out" / "5").exists()


def test_the_spool_is_bounded_and_the_bounds_come_from_the_operator(monkeypatch):
    sink = BoundedSpool(io.BytesIO(), 10, "the pod p")
    sink.write(b"x" * 10)
    with pytest.raises(ArchiveRefused, match="download from the pod p refused: the archive "
                                             "is larger than 10 bytes"):
        sink.write(b"x")
    monkeypatch.setenv("ANSFLOW_DOWNLOAD_MAX_BYTES", "123")
    monkeypatch.setenv("ANSFLOW_DOWNLOAD_MAX_FILES", "4")
    assert Limits.from_env() == Limits(123, 4)
    monkeypatch.setenv("ANSFLOW_DOWNLOAD_MAX_FILES", "lots")
    with pytest.raises(Exception, match="ANSFLOW_DOWNLOAD_MAX_FILES='lots' is not a positive"):
        Limits.from_env()


def test_a_header_claiming_gigabytes_is_refused_before_it_is_read(ws):
    """tarfile reads a PAX header whole: one claiming 4 GiB must not be read into memory."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 4 * 1024**3
    raw = io.BytesIO(header.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 4096)
    with pytest.raises(ArchiveRefused, match="a member header claims more than"):
        extract(raw, str(ws), ["out"], "the pod")


def test_not_a_tar_stream_is_a_clear_error(ws):
    with pytest.raises(ArchiveRefused, match="download from host h failed: not a valid tar"):
        extract(io.BytesIO(b"<html>hello</html>" * 100), str(ws), ["out"], "host h")
    untouched(ws)


def test_the_whole_workspace_when_the_author_asks_for_it(ws):
    done = extract(tar_of((".", "dir", None), ("./Makefile", "file", b"new"),
                          ("./bin", "sym", "/bin")), str(ws), ["."], "host h")
    assert done.files == ["Makefile"] and done.skipped == [("bin", "symbolic link")]
    with pytest.raises(ArchiveRefused, match="names the workspace itself"):
        extract(tar_of((".", "file", b"x")), str(ws), ["."], "host h")


def test_member_names_are_normalized_and_checked():
    assert member_path("./out//a/./b", ["out"]) == "out/a/b"
    assert member_path("out", ["out"]) == "out"
    assert member_path("./Makefile", ["."]) == "Makefile"  # `download: [.]`
    assert member_path("./", ["."]) == "."
    with pytest.raises(ArchiveRefused, match="climbs out"):
        member_path("../x", ["."])
    for bad in ("", ".", "./", "a\0b"):
        with pytest.raises(ArchiveRefused):
            member_path(bad, ["out"])


def test_a_time_no_file_can_have_keeps_the_file_and_now(ws):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("out/t")
        info.size, info.mtime = 1, 10**30
        tar.addfile(info, io.BytesIO(b"t"))
    buf.seek(0)
    assert extract(buf, str(ws), ["out"], "the pod").files == ["out/t"]
    assert (ws / "out" / "t").read_bytes() == b"t"
