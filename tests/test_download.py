"""`smsr download`: pinned files, SHA-256 verified, all-or-nothing; served here from a local copy (no network)."""
from __future__ import annotations

import functools
import http.server
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine import download

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def mirror(official_weights, set5_dir, tmp_path):
    """A folder laid out like the authors' repository, from the local copies of the same files."""
    root = tmp_path / "mirror"
    for src, rel, _, _ in download.FILES:
        local = official_weights if rel.startswith("weights/") else set5_dir / rel[len("data/Set5/"):]
        (root / src).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, root / src)
    return root


@pytest.fixture
def http_mirror(mirror):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/" % server.server_address[1]
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_pinned_files_match_the_local_copies(official_weights, set5_dir):
    """The hashes pinned for the download are those of the files the project is validated with."""
    for _, rel, sha, size in download.FILES:
        local = official_weights if rel.startswith("weights/") else set5_dir / rel[len("data/Set5/"):]
        assert download.sha256_file(local) == sha and local.stat().st_size == size, rel
    assert download.PINNED_COMMIT in download.BASE_URL and len(download.PINNED_COMMIT) == 40


def test_download_over_http_then_cached(http_mirror, tmp_path, capsys):
    dest = tmp_path / "home"
    assert download.main(["--dest", str(dest), "--base-url", http_mirror]) == 0
    for _, rel, sha, _ in download.FILES:
        assert download.sha256_file(dest / rel) == sha
    assert not [p for p in dest.rglob("*") if p.name.startswith(".")]  # no staging or temp files left
    assert download.main(["--dest", str(dest), "--base-url", http_mirror]) == 0
    assert "already in" in capsys.readouterr().out


def test_download_from_file_url_into_smsr_home(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("SMSR_HOME", str(tmp_path / "cache"))
    assert download.main(["--base-url", mirror.as_uri()]) == 0
    assert (tmp_path / "cache" / "weights" / "smsr_x2_official.pt").is_file()
    assert len(list((tmp_path / "cache" / "data" / "Set5" / "LR_bicubic" / "X2").iterdir())) == 5


def test_network_failure_is_one_line_and_leaves_nothing(tmp_path):
    dest = tmp_path / "new" / "home"
    r = subprocess.run([sys.executable, "-m", "engine.download", "--dest", str(dest), "--timeout", "5",
                        "--base-url", "http://127.0.0.1:%d/" % _closed_port()],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 5, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: download failed: cannot fetch http://127.0.0.1:") and "refused" in r.stderr
    assert not (tmp_path / "new").exists()  # not even the folders


def test_missing_file_on_server_and_bad_hash_leave_nothing(mirror, http_mirror, tmp_path, capsys):
    dest = tmp_path / "home"
    victim = mirror / download.FILES[-1][0]
    victim.unlink()  # the last file is missing: the 10 others must not be kept half-done
    assert download.main(["--dest", str(dest), "--base-url", http_mirror]) == 5
    assert "HTTP 404" in capsys.readouterr().err
    assert not dest.exists()
    victim.write_bytes(b"not the file")
    assert download.main(["--dest", str(dest), "--base-url", http_mirror]) == 4
    assert "expected " + download.FILES[-1][2] in capsys.readouterr().err
    assert not dest.exists()


def test_existing_destination_keeps_its_files_on_failure(tmp_path, capsys):
    dest = tmp_path / "home"
    (dest / "weights").mkdir(parents=True)
    (dest / "weights" / "mine.txt").write_text("keep")
    assert download.main(["--dest", str(dest), "--timeout", "5",
                          "--base-url", "http://127.0.0.1:%d/" % _closed_port()]) == 5
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["weights", "weights/mine.txt"]
