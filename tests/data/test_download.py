"""Downloads (file:// URLs), checksums, atomic writes, safe extraction and download=True for data sets."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch

import neuralcollapse.data as ncd
from neuralcollapse.data import download_url, extract_archive, md5sum
from neuralcollapse.data.download import Resource


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "server" / "payload.bin"
    src.parent.mkdir()
    data = os.urandom(3_000_000)  # spans several read chunks
    src.write_bytes(data)
    return src, data


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def test_download_file_url_with_checksum(tmp_path, source):
    src, data = source
    dest = tmp_path / "out" / "file.bin"
    path = download_url(src.as_uri(), dest, md5=_md5(data))
    assert path == dest and dest.read_bytes() == data
    assert md5sum(dest) == _md5(data)
    assert _leftovers(dest.parent) == []


def test_download_into_a_folder_uses_the_url_name(tmp_path, source):
    src, data = source
    folder = tmp_path / "dl"
    folder.mkdir()
    path = download_url(src.as_uri(), folder)
    assert path == folder / "payload.bin" and path.read_bytes() == data


def test_wrong_checksum_raises_and_leaves_no_file(tmp_path, source):
    src, _ = source
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(ValueError, match="checksum mismatch.*expected md5 0{32}.*discarded"):
        download_url(src.as_uri(), dest, md5="0" * 32)
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_existing_good_file_is_not_downloaded_again(tmp_path, source):
    src, _ = source
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"already here")
    os.utime(dest, (1_000_000, 1_000_000))
    # The URL serves other bytes: if it were fetched, the content (and mtime) would change.
    assert download_url(src.as_uri(), dest, md5=_md5(b"already here")) == dest
    assert dest.read_bytes() == b"already here" and dest.stat().st_mtime == 1_000_000
    assert download_url(src.as_uri(), dest) == dest and dest.read_bytes() == b"already here"


def test_failed_download_does_not_overwrite_an_existing_file(tmp_path, source):
    src, _ = source
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old but wrong")
    with pytest.raises(ValueError, match="left unchanged"):
        download_url(src.as_uri(), dest, md5="f" * 32)
    assert dest.read_bytes() == b"old but wrong" and _leftovers(tmp_path) == []


def test_corrupt_existing_file_is_replaced_by_a_verified_download(tmp_path, source):
    src, data = source
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"truncated")
    download_url(src.as_uri(), dest, md5=_md5(data))
    assert dest.read_bytes() == data


def test_unreachable_source_raises_runtime_error_naming_destination(tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(RuntimeError, match=f"put it at {dest}"):
        download_url((tmp_path / "missing.bin").as_uri(), dest)
    assert not dest.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("bad", ["abc", "g" * 32, 123])
def test_bad_md5_argument(tmp_path, source, bad):
    with pytest.raises(ValueError, match="`md5` must be a 32-character hex string"):
        download_url(source[0].as_uri(), tmp_path / "x", md5=bad)


# ---------------------------------------------------------------------------------------------- extraction
def _tar(path, members: dict[str, bytes], mode="w:gz"):
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("mode", ["w:gz", "w", "w:bz2", "w:xz"])
def test_extract_tar(tmp_path, mode):
    suffix = {"w:gz": ".tar.gz", "w": ".tar", "w:bz2": ".tar.bz2", "w:xz": ".tar.xz"}[mode]
    archive = tmp_path / f"a{suffix}"
    _tar(archive, {"top/a.txt": b"A", "top/sub/b.txt": b"B"}, mode)
    out = extract_archive(archive, tmp_path / "x")
    assert (out / "top" / "a.txt").read_bytes() == b"A" and (
        out / "top" / "sub" / "b.txt"
    ).read_bytes() == b"B"


def test_extract_zip_and_gz(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("d/f.txt", b"zip")
    assert (extract_archive(archive) / "d" / "f.txt").read_bytes() == b"zip"
    gz = tmp_path / "data.bin.gz"
    gz.write_bytes(gzip.compress(b"gzipped"))
    out = extract_archive(gz, tmp_path / "g")
    assert out == tmp_path / "g" / "data.bin" and out.read_bytes() == b"gzipped"


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil_abs.txt", "ok/../../evil.txt"])
def test_tar_path_traversal_is_refused(tmp_path, name):
    archive = tmp_path / "bad.tar.gz"
    _tar(archive, {"fine.txt": b"ok", name: b"evil"})
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="refusing to extract"):
        extract_archive(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and list(dest.iterdir()) == []


def test_tar_link_outside_is_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("inner/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tar.addfile(info)
    with pytest.raises(ValueError, match="points outside"):
        extract_archive(archive, tmp_path / "d")


def test_tar_device_file_is_refused(tmp_path):
    archive = tmp_path / "dev.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("fifo")
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    with pytest.raises(ValueError, match="device or special file"):
        extract_archive(archive, tmp_path / "d")


def test_zip_path_traversal_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../evil.txt", b"evil")
    with pytest.raises(ValueError, match="refusing to extract"):
        extract_archive(archive, tmp_path / "d")
    assert not (tmp_path / "evil.txt").exists()


def test_corrupt_or_unknown_archives(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not an archive at all")
    with pytest.raises(ValueError, match="is not a valid archive"):
        extract_archive(bad)
    odd = tmp_path / "file.rar"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="`path` must be"):
        extract_archive(odd)


# ---------------------------------------------------------------------------------------------- download=True
def _cifar10_archive(tmp_path, rng) -> tuple[bytes, np.ndarray]:
    buf = io.BytesIO()
    first = None
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
            first = data if first is None else first
            payload = pickle.dumps({b"data": data, b"labels": [1, 2]}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue(), first


def test_create_with_download_fetches_verifies_and_extracts(tmp_path, rng, monkeypatch):
    blob, first = _cifar10_archive(tmp_path, rng)
    server = tmp_path / "server" / "cifar-10-python.tar.gz"
    server.parent.mkdir()
    server.write_bytes(blob)
    monkeypatch.setitem(
        ncd.RESOURCES,
        "cifar10",
        (Resource(server.as_uri(), "cifar-10-python.tar.gz", _md5(blob), extract=True),),
    )
    root = tmp_path / "data"
    with pytest.raises(ncd.DatasetNotFoundError, match=server.as_uri()):
        ncd.create("cifar10", root=root)
    d = ncd.create("cifar10", root=root, download=True)
    assert len(d.train_y) == 10 and torch.equal(d.train_x[0].reshape(-1), torch.from_numpy(first[0]))
    assert (root / "cifar-10-python.tar.gz").read_bytes() == blob


def test_create_with_download_and_wrong_checksum(tmp_path, rng, monkeypatch):
    blob, _ = _cifar10_archive(tmp_path, rng)
    server = tmp_path / "cifar.tar.gz"
    server.write_bytes(blob)
    monkeypatch.setitem(
        ncd.RESOURCES,
        "cifar10",
        (Resource(server.as_uri(), "cifar-10-python.tar.gz", "1" * 32, extract=True),),
    )
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="checksum mismatch"):
        ncd.create("cifar10", root=root, download=True)
    assert not (root / "cifar-10-batches-py").exists() and not (root / "cifar-10-python.tar.gz").exists()


def test_mnist_download_keeps_gz_files(tmp_path, rng, monkeypatch):
    resources = []
    arrays = {}
    for name, shape in (
        ("train-images-idx3-ubyte", (3, 28, 28)),
        ("train-labels-idx1-ubyte", (3,)),
        ("t10k-images-idx3-ubyte", (2, 28, 28)),
        ("t10k-labels-idx1-ubyte", (2,)),
    ):
        arr = rng.integers(0, 10, shape, dtype=np.uint8)
        arrays[name] = arr
        path = tmp_path / "srv" / f"{name}.gz"
        path.parent.mkdir(exist_ok=True)
        ncd.readers.write_idx(path, arr)
        resources.append(Resource(path.as_uri(), path.name, md5sum(path)))
    monkeypatch.setitem(ncd.RESOURCES, "mnist", tuple(resources))
    d = ncd.create("mnist", root=tmp_path / "data", download=True, verify=False)  # synthetic files
    assert torch.equal(d.test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    assert (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()


def test_resource_table_is_complete():
    for name in ("mnist", "fashionmnist", "cifar10", "cifar100", "svhn", "tinyimagenet"):
        for res in ncd.RESOURCES[name]:
            assert res.url.startswith(("http://", "https://")) and len(res.md5) == 32
    assert ncd.RESOURCES["cifar100"][0].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
