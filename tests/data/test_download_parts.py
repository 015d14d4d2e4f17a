"""A killed download's ``.part`` file is removed by the next download of the same file; live ones are kept."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time

import pytest

from neuralcollapse.data import download_url
from neuralcollapse.data.download import STALE_PART_SECONDS, remove_stale_parts


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "server" / "payload.bin"
    src.parent.mkdir()
    data = os.urandom(200_000)
    src.write_bytes(data)
    return src, data


def _parts(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# A download that stalls after its first chunk (the connection hangs), to be killed mid-way.
STALLED = textwrap.dedent(
    """
    import sys, time
    from neuralcollapse.data import download as dl

    class Stalled:
        sent = False
        def read(self, n):
            if not self.sent:
                self.sent = True
                return b"x" * 1000
            time.sleep(600)
            return b""
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False

    dl.urllib.request.urlopen = lambda url, timeout=None: Stalled()
    dl.download_url("http://example.invalid/payload.bin", sys.argv[1])
    """
)


@pytest.mark.slow
def test_part_file_of_a_killed_download_is_removed_by_the_next_download(tmp_path, source):
    src, data = source
    dest = tmp_path / "data" / "payload.bin"
    proc = subprocess.Popen([sys.executable, "-c", STALLED, str(dest)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (dest.parent.is_dir() and _parts(dest.parent)):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.time() < deadline
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: the download's own clean-up never runs
        proc.wait()
    (left,) = _parts(dest.parent)
    assert left.startswith(f".payload.bin.pid{proc.pid}.")
    download_url(src.as_uri(), dest, hashlib.md5(data).hexdigest())
    assert _parts(dest.parent) == [] and dest.read_bytes() == data


def test_only_parts_of_dead_or_long_idle_downloads_of_that_file_are_removed(tmp_path, source):
    src, data = source
    folder = tmp_path / "data"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {
        "dead": f".payload.bin.pid{dead_pid}.a1b2c3d4.part",  # its process is gone
        "live": f".payload.bin.pid{os.getppid()}.e5f6g7h8.part",  # a running process (our parent)
        "old_legacy": ".payload.bin.k2j3h4g5.part",  # no PID (older versions), untouched for hours
        "new_legacy": ".payload.bin.zz9xx8yy.part",  # no PID, written a moment ago: may still be running
        "other_file": f".other.bin.pid{dead_pid}.a1b2c3d4.part",  # another file's download
    }
    for name in names.values():
        (folder / name).write_bytes(b"partial")
    old = time.time() - STALE_PART_SECONDS - 60
    os.utime(folder / names["old_legacy"], (old, old))

    assert sorted(p.name for p in remove_stale_parts(folder / "payload.bin")) == sorted(
        [names["dead"], names["old_legacy"]]
    )
    (folder / names["dead"]).write_bytes(b"partial")
    download_url(src.as_uri(), folder / "payload.bin", hashlib.md5(data).hexdigest())  # cleans up too
    assert _parts(folder) == sorted([names["live"], names["new_legacy"], names["other_file"]])
    assert (folder / "payload.bin").read_bytes() == data
