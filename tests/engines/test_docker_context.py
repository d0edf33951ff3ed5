"""Build contexts: the up-front check and the streamed tar (no engine needed)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ansflow.engines.docker_context import ContextStream, scan_context, write_tar
from ansflow.engines.errors import EngineError


def make_context(root: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "secret.env").write_text("TOKEN=1\n")
    (root / ".dockerignore").write_text("# comment\nsecret.env\n")


def tar_names(data: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}


def test_scan_honours_dockerignore_and_counts_bytes(tmp_path):
    make_context(tmp_path)
    files = scan_context(str(tmp_path), "Dockerfile", None, 10_000, hint="h")
    assert "secret.env" not in files.files
    assert {"Dockerfile", "src", "src/app.py", ".dockerignore"} <= set(files.files)
    assert files.total_bytes == sum((tmp_path / f).stat().st_size for f in files.files
                                    if (tmp_path / f).is_file())


def test_scan_rejects_a_context_over_the_limit(tmp_path):
    make_context(tmp_path)
    (tmp_path / "big.bin").write_bytes(b"x" * 5000)
    with pytest.raises(EngineError, match="over the limit") as info:
        scan_context(str(tmp_path), "Dockerfile", None, 1000, hint="use a .dockerignore")
    assert info.value.hint == "use a .dockerignore"


def test_streamed_tar_has_the_files_and_the_outside_dockerfile(tmp_path):
    make_context(tmp_path)
    files = scan_context(str(tmp_path), ".ansflow.Dockerfile",
                         (".ansflow.Dockerfile", "FROM scratch\nCOPY src /src\n"), 10_000, "h")
    stream = ContextStream(files)
    try:
        data = b"".join(stream.chunks())
    finally:
        stream.close()
    names = tar_names(data)
    assert names["src/app.py"] == b"print('hi')\n"
    assert names[".ansflow.Dockerfile"] == b"FROM scratch\nCOPY src /src\n"
    assert b".ansflow.Dockerfile" in names[".dockerignore"]
    assert "secret.env" not in names and stream.error is None


def test_closing_early_stops_the_writer(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "big.bin").write_bytes(b"y" * (8 * 1024 * 1024))
    stream = ContextStream(scan_context(str(tmp_path), "Dockerfile", None, 10**9, "h"))
    next(stream.chunks())
    stream.close()  # the writer is blocked on a full pipe: close must unblock it
    assert not stream._thread.is_alive()


def test_write_tar_to_a_buffer(tmp_path):
    make_context(tmp_path)
    buf = io.BytesIO()
    write_tar(scan_context(str(tmp_path), "Dockerfile", None, 10_000, "h"), buf)
    assert tar_names(buf.getvalue())["Dockerfile"] == b"FROM scratch\n"
