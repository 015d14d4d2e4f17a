"""On-disk readers, each fed small files written here in the exact published formats."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import neuralcollapse.data as ncd
from neuralcollapse.data import DatasetFormatError, DatasetNotFoundError
from neuralcollapse.data.readers import read_idx, write_idx


# ---------------------------------------------------------------------------------------------- IDX / MNIST
def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX as LeCun documents it: magic 0x00000800 | ndim for unsigned bytes, big-endian int32 sizes."""
    assert array.dtype == np.uint8
    magic = struct.pack(">I", 0x0800 | array.ndim)  # 2051 for images (ndim 3), 2049 for labels (ndim 1)
    return magic + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_mnist(folder, rng, n_train=6, n_test=4, gz=True, size=28):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def test_idx_magic_numbers_are_the_published_ones():
    assert _idx_bytes(np.zeros((1, 2, 2), np.uint8))[:4] == struct.pack(">I", 2051)
    assert _idx_bytes(np.zeros(1, np.uint8))[:4] == struct.pack(">I", 2049)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST/raw"), ("fashionmnist", "FashionMNIST/raw")])
def test_mnist_like_round_trip(tmp_path, rng, gz, name, folder):
    arrays = _write_mnist(tmp_path / folder, rng, gz=gz)
    d = ncd.create(name, root=tmp_path, verify=False)  # synthetic files: not the official ones
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(d.train_y, torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)))
    assert torch.equal(d.test_x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert torch.equal(d.test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    assert d.image_size == (28, 28) and d.in_channels == 1 and d.num_classes == 10
    expected_mean = {"mnist": 0.1307, "fashionmnist": 0.2860}[name]
    assert d.mean == (expected_mean,)


def test_mnist_root_may_be_the_raw_folder_itself(tmp_path, rng):
    arrays = _write_mnist(tmp_path, rng, gz=False)
    d = ncd.create("mnist", root=tmp_path, to_rgb=True, verify=False)
    assert d.in_channels == 3 and torch.equal(
        d.train_x[:, 1], torch.from_numpy(arrays["train-images-idx3-ubyte"])
    )


@pytest.mark.parametrize(
    ("array", "suffix"),
    [
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), ""),
        (np.arange(-3, 3, dtype=np.int8), ".gz"),
        (np.arange(6, dtype=np.int16).reshape(3, 2) - 2, ""),
        (np.arange(6, dtype=np.int32) * 1000, ".gz"),
        (np.linspace(0, 1, 5, dtype=np.float32), ""),
        (np.linspace(0, 1, 5, dtype=np.float64), ""),
    ],
)
def test_idx_all_types_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == array.dtype and np.array_equal(out, array)
    # Multi-byte values are big-endian on disk.
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    if array.dtype.itemsize > 1:
        header = 4 + 4 * array.ndim
        assert raw[header:] == array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x01\x02\x08\x01\x00\x00\x00\x02ab", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "unknown IDX data type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "promises"),
        (b"", "not an IDX file"),
    ],
)
def test_idx_corrupt_files(tmp_path, payload, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(payload)
    with pytest.raises(DatasetFormatError, match=match):
        read_idx(path)


def test_corrupt_gzip_and_truncated_mnist_name_the_file(tmp_path, rng):
    folder = tmp_path / "MNIST" / "raw"
    _write_mnist(folder, rng)
    good = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetFormatError, match="train-images-idx3-ubyte.gz"):
        ncd.create("mnist", root=tmp_path)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(good)[:-10]))
    with pytest.raises(DatasetFormatError, match="truncated or corrupt"):
        ncd.create("mnist", root=tmp_path)


def test_mnist_label_count_mismatch(tmp_path, rng):
    folder = tmp_path / "MNIST" / "raw"
    _write_mnist(folder, rng)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(DatasetFormatError, match="expected uint8 images"):
        ncd.create("mnist", root=tmp_path, verify=False)


# ---------------------------------------------------------------------------------------------- CIFAR
def _cifar_batch(path, rng, n, label_key, k, protocol=2):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, k, n).tolist()
    with open(path, "wb") as fh:
        pickle.dump(
            {b"batch_label": b"test", label_key: labels, b"data": data, b"filenames": [b"x"] * n},
            fh,
            protocol=protocol,
        )
    return data.reshape(n, 3, 32, 32), np.asarray(labels)


def test_cifar10_round_trip(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    parts = [
        _cifar_batch(folder / f"data_batch_{i}", rng, 3, b"labels", 10, protocol=2 + i % 4)
        for i in range(1, 6)
    ]
    test = _cifar_batch(folder / "test_batch", rng, 4, b"labels", 10)
    names = [f"class{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, fh, protocol=2)
    d = ncd.create("cifar10", root=tmp_path)
    assert torch.equal(d.train_x, torch.from_numpy(np.concatenate([p[0] for p in parts])))
    assert torch.equal(d.train_y, torch.from_numpy(np.concatenate([p[1] for p in parts])))
    assert torch.equal(d.test_x, torch.from_numpy(test[0])) and torch.equal(
        d.test_y, torch.from_numpy(test[1])
    )
    assert d.class_names == [f"class{i}" for i in range(10)]
    # Channel-major layout: the first 1024 bytes of a row are the red plane.
    assert torch.equal(d.train_x[0, 0].reshape(-1), torch.from_numpy(parts[0][0][0, 0].reshape(-1)))
    assert d.mean == (0.4914, 0.4822, 0.4465) and d.std == (0.2470, 0.2435, 0.2616)
    official = ncd.create("cifar10", root=tmp_path, official_normalization=True)
    assert official.std == (0.2023, 0.1994, 0.2010)


def test_cifar100_round_trip_and_normalisation(tmp_path, rng):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = _cifar_batch(folder / "train", rng, 5, b"fine_labels", 100)
    test = _cifar_batch(folder / "test", rng, 3, b"fine_labels", 100)
    d = ncd.create("cifar100", root=folder)  # root may be the data set's folder itself
    assert torch.equal(d.train_x, torch.from_numpy(train[0])) and torch.equal(
        d.test_y, torch.from_numpy(test[1])
    )
    assert d.num_classes == 100 and d.class_names[:2] == ["0", "1"]
    assert d.mean == (0.5071, 0.4867, 0.4408) and d.std == (0.2675, 0.2565, 0.2761)
    official = ncd.create("cifar100", root=tmp_path, official_normalization=True)
    assert official.mean == (0.4914, 0.4822, 0.4465) and official.std == (0.2023, 0.1994, 0.2010)


def test_cifar_corrupt_and_hostile_files(tmp_path, rng):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _cifar_batch(folder / "test", rng, 3, b"fine_labels", 100)
    (folder / "train").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetFormatError, match=r"cifar-100-python/train is not a CIFAR python batch"):
        ncd.create("cifar100", root=tmp_path)
    with open(folder / "train", "wb") as fh:
        pickle.dump({b"data": os.getcwd, b"fine_labels": [0]}, fh)  # a global that is not a NumPy array
    with pytest.raises(DatasetFormatError, match="refusing to load global"):
        ncd.create("cifar100", root=tmp_path)
    with open(folder / "train", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}, fh)
    with pytest.raises(DatasetFormatError, match=r"must be uint8 \(N, 3072\)"):
        ncd.create("cifar100", root=tmp_path)
    with open(folder / "train", "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, fh)
    with pytest.raises(DatasetFormatError, match="b'fine_labels'"):
        ncd.create("cifar100", root=tmp_path)
    with open(folder / "train", "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [100]}, fh)
    with pytest.raises(DatasetFormatError, match=r"labels must be in \[0, 100\)"):
        ncd.create("cifar100", root=tmp_path)


# ---------------------------------------------------------------------------------------------- SVHN
def test_svhn_round_trip_maps_10_to_0(tmp_path, rng):
    import scipy.io

    folder = tmp_path / "svhn"
    folder.mkdir()
    expected = {}
    for split, n in (("train", 5), ("test", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        y[0] = 10
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        expected[split] = (x, y)
    d = ncd.create("svhn", root=tmp_path)
    x, y = expected["train"]
    assert torch.equal(d.train_x, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    assert d.train_x[1, 2, 4, 7] == int(x[4, 7, 2, 1])  # (H, W, C, N) → (N, C, H, W)
    assert d.train_y.tolist() == [0 if v == 10 else int(v) for v in y[:, 0]]
    assert d.test_y[0] == 0 and d.mean == (0.4377, 0.4438, 0.4728)


def test_svhn_corrupt_mat(tmp_path):
    import scipy.io

    folder = tmp_path / "svhn"
    folder.mkdir()
    (folder / "train_32x32.mat").write_bytes(b"\x00" * 200)
    scipy.io.savemat(
        folder / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 1), np.uint8), "y": np.ones((1, 1))}
    )
    with pytest.raises(DatasetFormatError, match="train_32x32.mat is not a readable MATLAB file"):
        ncd.create("svhn", root=tmp_path)
    scipy.io.savemat(folder / "train_32x32.mat", {"images": np.zeros((1, 1))})
    with pytest.raises(DatasetFormatError, match="must contain variables 'X' and 'y'"):
        ncd.create("svhn", root=tmp_path)
    scipy.io.savemat(
        folder / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))}
    )
    with pytest.raises(DatasetFormatError, match=r"\(H, W, 3, N\) with N = 3"):
        ncd.create("svhn", root=tmp_path)


# ---------------------------------------------------------------------------------------------- images
def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def test_tinyimagenet_tree_round_trip(tmp_path, rng):
    base = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # unsorted in the file; labels follow the sorted order
    base.mkdir()
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tshark\nn03\tray\nn99\tunused\n")
    train = {}
    for w in wnids:
        imgs = rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
        for i, img in enumerate(imgs):
            # PNG content under the dataset's .JPEG names keeps the pixels exact; Pillow reads by content.
            _png(base / "train" / w / "images" / f"{w}_{i}.JPEG", img)
        train[w] = imgs
    grey = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    _png(base / "val" / "images" / "val_0.JPEG", grey)
    val1 = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    _png(base / "val" / "images" / "val_1.JPEG", val1)
    (base / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn03\t0\t0\t5\t5\nval_1.JPEG\tn01\t1\t1\t4\t4\n"
    )
    d = ncd.create("tinyimagenet", root=tmp_path, num_workers=2)
    assert d.num_classes == 3 and d.class_names == ["goldfish, Carassius auratus", "shark", "ray"]
    order = sorted(wnids)
    expected_x = np.concatenate([train[w] for w in order]).transpose(0, 3, 1, 2)
    assert torch.equal(d.train_x, torch.from_numpy(expected_x))
    assert d.train_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert d.test_y.tolist() == [2, 0]
    assert torch.equal(d.test_x[0], torch.from_numpy(np.repeat(grey[None], 3, axis=0)))  # grey → RGB
    assert torch.equal(d.test_x[1], torch.from_numpy(val1.transpose(2, 0, 1)))
    resized = ncd.create("tinyimagenet", root=tmp_path, image_size=4)
    assert resized.image_size == (4, 4)
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn77\n")
    with pytest.raises(DatasetFormatError, match="line 1"):
        ncd.create("tinyimagenet", root=tmp_path)


def test_real_jpeg_is_decoded_like_pillow(tmp_path, rng):
    folder = tmp_path / "imgs"
    for split in ("train", "test"):
        arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        (folder / split / "a").mkdir(parents=True)
        Image.fromarray(arr).save(folder / split / "a" / "x.jpg", format="JPEG", quality=90)
    d = ncd.create("imagefolder", root=folder)
    with Image.open(folder / "train" / "a" / "x.jpg") as img:
        ref = np.asarray(img.convert("RGB"))
    assert torch.equal(d.train_x[0], torch.from_numpy(ref.transpose(2, 0, 1).copy()))


def test_imagefolder_round_trip(tmp_path, rng):
    arrays = {}
    for split, counts in (("train", {"cat": 2, "dog": 3}), ("val", {"dog": 1})):
        for cls, n in counts.items():
            for i in range(n):
                arr = rng.integers(0, 256, (5, 7), dtype=np.uint8)
                _png(tmp_path / split / cls / f"{i}.png", arr)
                arrays[(split, cls, i)] = arr
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored")
    d = ncd.create("imagefolder", root=tmp_path, in_channels=1)
    assert d.class_names == ["cat", "dog"] and d.image_size == (5, 7) and d.in_channels == 1
    assert d.train_y.tolist() == [0, 0, 1, 1, 1]
    assert torch.equal(d.train_x[2, 0], torch.from_numpy(arrays[("train", "dog", 0)]))
    assert d.test_y.tolist() == [1] and torch.equal(
        d.test_x[0, 0], torch.from_numpy(arrays[("val", "dog", 0)])
    )
    x = d.train_x.double() / 255
    assert d.mean[0] == pytest.approx(x.mean().item()) and d.std[0] == pytest.approx(
        x.std(unbiased=False).item()
    )
    rgb = ncd.create("imagefolder", root=tmp_path, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert rgb.in_channels == 3 and rgb.mean == (0.5, 0.5, 0.5)
    assert torch.equal(rgb.train_x[2, 1], torch.from_numpy(arrays[("train", "dog", 0)]))


def test_imagefolder_errors(tmp_path, rng):
    with pytest.raises(ValueError, match="`root` must be given"):
        ncd.create("imagefolder")
    with pytest.raises(DatasetNotFoundError, match="train"):
        ncd.create("imagefolder", root=tmp_path)
    _png(tmp_path / "train" / "a" / "0.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    _png(tmp_path / "train" / "a" / "1.png", rng.integers(0, 256, (5, 4), dtype=np.uint8))
    _png(tmp_path / "test" / "b" / "0.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match="classes missing from"):
        ncd.create("imagefolder", root=tmp_path)
    (tmp_path / "test" / "b" / "0.png").rename(tmp_path / "test" / "b.png")
    (tmp_path / "test" / "b").rmdir()
    with pytest.raises(DatasetFormatError, match="pass image_size"):
        ncd.create("imagefolder", root=tmp_path)
    assert ncd.create("imagefolder", root=tmp_path, image_size=(4, 4)).train_x.shape == (2, 3, 4, 4)
    (tmp_path / "train" / "a" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match="2.png is not a readable image"):
        ncd.create("imagefolder", root=tmp_path, image_size=(4, 4))
    with pytest.raises(ValueError, match="`in_channels` must be 1 or 3"):
        ncd.create("imagefolder", root=tmp_path, in_channels=2)
    with pytest.raises(ValueError, match="`image_size`"):
        ncd.create("imagefolder", root=tmp_path, image_size=(4, 0))


# ---------------------------------------------------------------------------------------------- missing data
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte.gz"),
        ("fashionmnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
        ("svhn", "svhn/train_32x32.mat"),
        ("tinyimagenet", "tiny-imagenet-200/wnids.txt"),
    ],
)
def test_missing_data_message_names_files_url_and_flag(tmp_path, name, expected):
    with pytest.raises(DatasetNotFoundError) as info:
        ncd.create(name, root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / expected) in msg
    assert "--data-dir" in msg and "download=True" in msg
    for res in ncd.RESOURCES[name]:
        assert res.url in msg and res.md5 in msg
    assert isinstance(info.value, FileNotFoundError)


def test_partial_cifar_lists_only_missing_files(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _cifar_batch(folder / "data_batch_1", rng, 1, b"labels", 10)
    with pytest.raises(DatasetNotFoundError) as info:
        ncd.create("cifar10", root=tmp_path)
    msg = str(info.value)
    assert "data_batch_2" in msg and "test_batch" in msg and "data_batch_1\n" not in msg
