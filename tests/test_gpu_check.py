"""The one-call GPU check (``neuralcollapse bench gpu``, ``scripts/gpu-check.sh``): its pieces on small inputs
and its dry run end to end (the CPU stand-in for a GPU run: outputs, keys, every step's status)."""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralcollapse.bench import gpu

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ small pieces
def test_relative_difference_closed_forms():
    assert gpu.relative_difference(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5])) == pytest.approx(0.2)
    assert gpu.relative_difference(torch.zeros(3), torch.zeros(3)) == 0.0
    assert gpu.relative_difference(torch.zeros(2), torch.zeros(3)) == math.inf
    assert gpu.relative_difference({"a": 1.0, "b": 4.0}, {"a": 1.5, "b": 4.0}) == pytest.approx(0.5 / 1.5)
    assert gpu.relative_difference({"a": 1e-9}, {"a": 0.0}) == pytest.approx(1e-3)  # floor 1e-6 on the scale
    assert gpu.relative_difference({"a": math.inf}, {"a": math.inf}) == 0.0
    assert gpu.relative_difference({"a": 1.0}, {"a": math.inf}) == math.inf
    assert gpu.relative_difference({"a": 1.0}, {"b": 1.0}) == math.inf


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_throughput_images_from_npz_and_idx_are_padded_3_channel(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.arange(5) % 3
    np.savez(tmp_path / "d.npz", train_x=images, train_y=labels)
    x, y, what = gpu.load_throughput_images(tmp_path / "d.npz", 12)
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.uint8 and "padded to 32x32" in what
    assert torch.equal(x[:, :, 2:30, 2:30], torch.from_numpy(images)[torch.arange(12) % 5, None].expand(-1, 3, -1, -1))
    assert int(x[:, :, :2].abs().sum()) == 0 and int(x[:, :, :, 30:].abs().sum()) == 0  # zero border
    assert y.tolist() == (np.arange(12) % 5 % 3).tolist()
    # the four IDX files of Fashion-MNIST (gzip), as `--data build/gpu-carry/fashion-mnist`
    folder = tmp_path / "fmnist"
    folder.mkdir()
    for name, arr in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels.astype(np.uint8)),
                      ("t10k-images-idx3-ubyte", images[:2]), ("t10k-labels-idx1-ubyte", labels[:2].astype(np.uint8))):
        (folder / f"{name}.gz").write_bytes(gzip.compress(_idx(arr)))
    x2, y2, what2 = gpu.load_throughput_images(folder, 4, verify=False)  # not the official files
    assert what2.startswith("Fashion-MNIST") and torch.equal(x2, x[:4]) and y2.tolist() == labels[:4].tolist()
    syn, _, what3 = gpu.load_throughput_images(None, 3)
    assert syn.shape == (3, 3, 32, 32) and what3.startswith("synthetic")


def test_throughput_images_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="`data`"):
        gpu.load_throughput_images(tmp_path / "missing.npz", 4)
    np.savez(tmp_path / "keys.npz", x=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="`train_x` and `train_y`"):
        gpu.load_throughput_images(tmp_path / "keys.npz", 4)
    np.savez(tmp_path / "float.npz", train_x=np.zeros((2, 28, 28), np.float32), train_y=np.zeros(2))
    with pytest.raises(ValueError, match="must be uint8"):
        gpu.load_throughput_images(tmp_path / "float.npz", 4)
    np.savez(tmp_path / "big.npz", train_x=np.zeros((2, 40, 40), np.uint8), train_y=np.zeros(2))
    with pytest.raises(ValueError, match="H, W <= 32"):
        gpu.load_throughput_images(tmp_path / "big.npz", 4)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"budget_s": 0}, "`budget_s` must be a positive"),
        ({"budget_s": float("nan")}, "`budget_s` must be a positive"),
        ({"images": 100}, r"`images` must be an int >= 256"),
        ({"compile": "yes"}, "`compile` must be one of"),
        ({"workers": -1}, "`workers` must be an int >= 0"),
        ({"steps": ("env", "bench")}, "`steps` must be a non-empty subset"),
        ({"steps": ()}, "`steps` must be a non-empty subset"),
        ({"families": ("ce", )}, "`families` must be a non-empty subset"),
        ({"timeouts": {"smoky": 3}}, "`timeouts` names unknown step 'smoky'"),
        ({"timeouts": {"smoke": -3}}, r"`timeouts\['smoke'\]` must be a positive"),
    ],
)
def test_options_reject_bad_settings(changes, message):
    with pytest.raises(ValueError, match=message):
        gpu.CheckOptions(**changes).validate()


def test_options_missing_data_and_cli_flags(tmp_path):
    with pytest.raises(FileNotFoundError, match="`data`"):
        gpu.CheckOptions(data=str(tmp_path / "nowhere")).validate()
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    gpu.add_arguments(parser)
    opts = gpu.options_from_args(parser.parse_args(
        ["--dry-run", "--steps", "env,smoke", "--families", "etf", "--timeout", "smoke=12", "--budget-s", "90"]))
    assert (opts.dry_run, opts.steps, opts.families, opts.timeouts, opts.budget_s) == (
        True, ("env", "smoke"), ("etf",), {"smoke": 12.0}, 90.0)
    assert opts.sizes()["backbone"] == "convnet" and gpu.CheckOptions().sizes()["backbone"] == "resnet18"
    with pytest.raises(ValueError, match="STEP=SECONDS"):
        gpu.options_from_args(parser.parse_args(["--timeout", "smoke"]))
    with pytest.raises(ValueError, match="STEP=SECONDS"):
        gpu.options_from_args(parser.parse_args(["--timeout", "smoke=soon"]))


def test_run_process_kills_the_whole_group_after_its_timeout(tmp_path):
    marker = tmp_path / "survivor"
    # a child that starts a grandchild; both must be gone after the timeout (no file written 1.5 s later)
    grandchild = f"import time; time.sleep(1.5); open({str(marker)!r}, 'w')"
    script = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); "
              "print('started', flush=True); time.sleep(60)")
    start = time.perf_counter()
    out = gpu.run_process([sys.executable, "-c", script], timeout=1.0, log_path=tmp_path / "log")
    assert out.timed_out and out.rc is None and time.perf_counter() - start < 15
    assert "started" in out.output
    time.sleep(2.0)
    assert not marker.exists()
    done = gpu.run_process([sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"], timeout=30,
                           log_path=tmp_path / "log2")
    assert (done.rc, done.timed_out, done.output.strip()) == (3, False, "bye")


def test_parse_junit_and_verbose_log(tmp_path):
    (tmp_path / "r.xml").write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="1" skipped="1" time="2.5">'
        '<testcase classname="tests.a" name="t1"/>'
        '<testcase classname="tests.a" name="t2"><failure message="assert 1 == 2&#10;more">x</failure></testcase>'
        '<testcase classname="tests.a" name="t3"><error message="boom"/></testcase>'
        '<testcase classname="tests.a" name="t4"><skipped/></testcase></testsuite></testsuites>')
    got = gpu.parse_junit(tmp_path / "r.xml")
    assert {k: got[k] for k in ("tests", "passed", "failed", "errors", "skipped")} == dict(
        tests=4, passed=1, failed=1, errors=1, skipped=1)
    assert got["failing"] == ["tests.a::t2: assert 1 == 2", "tests.a::t3: boom"]
    log = ("tests/a.py::t1 PASSED    [ 25%]\n[gw1] [ 50%] FAILED tests/a.py::t2\n"
           "tests/a.py::t3 SKIPPED (needs CUDA) [ 75%]\nplain line PASSED without an id\n")
    part = gpu.parse_pytest_log(log)
    assert (part["tests"], part["passed"], part["failed"], part["skipped"], part["partial"]) == (3, 1, 1, 1, True)


def test_device_test_files_are_the_marked_and_fixture_tests():
    files = {p.relative_to(ROOT).as_posix() for p in gpu.device_test_files(ROOT / "tests")}
    assert {"tests/test_devices.py", "tests/heads/test_contract.py", "tests/models/test_backbones.py",
            "tests/data/test_samplers.py", "tests/data/test_augment.py"} <= files
    assert gpu.SELF_TEST not in files and "tests/losses/test_occe.py" not in files


def test_budget_and_timeouts_are_recorded_not_fatal(tmp_path):
    # budget smaller than the reserve: every step skipped, the report still written
    report = gpu.run_check(gpu.CheckOptions(out=str(tmp_path / "a"), dry_run=True, budget_s=6,
                                            steps=("env", "crosscheck")))
    assert report["steps"]["env"]["status"] == report["steps"]["crosscheck"]["status"] == "skipped"
    assert report["steps"]["env"]["reason"].startswith("budget exhausted")
    assert report["steps"]["smoke"] == {"status": "skipped", "reason": "not selected (--steps)"}
    assert gpu.exit_status(report) == 1
    # a step killed by its own timeout is recorded, the next step still runs
    report = gpu.run_check(gpu.CheckOptions(out=str(tmp_path / "b"), dry_run=True, steps=("env", "suite"),
                                            timeouts={"env": 0.2}))
    assert report["steps"]["env"]["status"] == "timeout" and "killed after" in report["steps"]["env"]["error"]
    assert report["steps"]["suite"]["status"] == "skipped"  # dry run: the whole suite is CI's job
    saved = json.loads((tmp_path / "b" / "gpu-check.json").read_text())
    assert saved["steps"]["env"]["status"] == "timeout"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(gpu.OUTPUT_FILES)


# ------------------------------------------------------------------------------------------ the dry run
@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get(gpu.CHILD_ENV)), reason="inside a GPU check already")
def test_dry_run_end_to_end(tmp_path):
    """scripts/gpu-check.sh --dry-run: every step recorded; throughput, cross-checks and a smoke family run.

    One smoke family keeps it short (the others are the same code path; `--dry-run` alone runs all five)."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiny.npz", train_x=rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
             train_y=np.arange(64) % 10)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--dry-run", "--out", str(out), "--data",
         str(tmp_path / "tiny.npz"), "--families", "ce+occe", "--budget-s", "400"],
        capture_output=True, text=True, env=env, timeout=480, cwd=ROOT)
    assert sorted(p.name for p in out.iterdir()) == sorted(gpu.OUTPUT_FILES), proc.stderr[-2000:]
    report = json.loads((out / "gpu-check.json").read_text())
    assert set(report) == {"meta", "steps", "summary"}
    assert report["meta"]["dry_run"] is True and report["meta"]["not_measured_on_gpu"] is True
    statuses = {name: s["status"] for name, s in report["steps"].items()}
    assert list(statuses) == list(gpu.STEPS)
    assert statuses == {"env": "ok", "tests": "ok", "crosscheck": "ok", "throughput": "ok", "compile": "ok",
                        "smoke": "ok", "suite": "skipped"}, json.dumps(report["steps"], indent=1)[:4000]
    assert proc.returncode == 0
    steps = report["steps"]
    assert steps["env"]["result"]["info"]["torch"] == torch.__version__
    tests = steps["tests"]["result"]
    assert tests["failed"] == tests["errors"] == 0 and tests["passed"] >= 7  # the device-generic tests on CPU
    checks = steps["crosscheck"]["result"]["checks"]
    assert all(c["ok"] and c["max_rel_diff"] <= gpu.CROSSCHECK_TOL for c in checks)
    assert {c["name"].split(":")[0] for c in checks} == {
        "ood msp", "ood energy", "ood mahalanobis", "ood vim", "ood knn", "neural_collapse", "NeuralCollapse stream",
        "assign_prototypes", "HypersphericalPrototypeHead", "FixedETFHead"}
    assert sum("fit cpu, score cpu" in c["name"] for c in checks) == 11  # 5 detectors + 3 x 2 with fitted state
    runs = steps["throughput"]["result"]["runs"]
    assert set(runs) == {"ours", "official", "official_0_workers"}
    assert all(r["img_s"] > 0 and r["peak_memory_mib"] is None for r in runs.values())
    assert "padded to 32x32" in steps["throughput"]["result"]["setting"]["data"]
    assert steps["compile"]["result"]["runs"]["ours_compiled"]["img_s"] > 0
    family = steps["smoke"]["result"]["families"]["ce+occe"]
    assert family["ok"] and family["epochs"] == [1] and family["resumed_epochs"] == [1, 2]
    assert family["finite_losses"] and family["nc_logged"] and family["checkpoint"]
    summary = report["summary"]
    assert summary["statuses"] == statuses and summary["ratio_vs_official"]["official"] == pytest.approx(1.0)
    md = (out / "gpu-check.md").read_text()
    for heading in ("# GPU check (dry run", "## Training throughput", "## CUDA vs CPU", "## Paper families",
                    "## pytest: tests"):
        assert heading in md
    assert "===== smoke: ok" in (out / "gpu-check.log").read_text()


def test_cli_spells_the_check_like_the_module_and_rejects_misuse():
    from neuralcollapse import bench
    from neuralcollapse.cli import BENCH_EXPLICIT, BENCH_GROUPS, build_parser, main

    assert BENCH_EXPLICIT == bench.EXPLICIT_GROUPS and "gpu" in BENCH_GROUPS
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["bench"].format_help().replace("\n", " ")
    text = " ".join(text.split())
    assert ",".join(gpu.STEPS) in text.replace(", ", ",") and ",".join(gpu.FAMILIES) in text.replace(", ", ",")
    assert f"(default {gpu.DEFAULT_BUDGET_S:g})" in text
    with pytest.raises(SystemExit, match="apply to the gpu group only"):
        main(["bench", "losses", "--dry-run"])
    with pytest.raises(SystemExit, match="runs alone"):
        main(["bench", "gpu", "train"])
    with pytest.raises(SystemExit, match="`families` must be a non-empty subset"):
        main(["bench", "gpu", "--families", "ce"])


def test_bench_group_rows_from_a_report(monkeypatch):
    report = gpu._initial_report(gpu.CheckOptions(dry_run=True), None)
    report["steps"]["throughput"].update(status="ok", wall_s=3.0, result={"runs": {
        "ours": {"img_s": 900.0, "peak_memory_mib": 512.0, "pipeline": "batched"},
        "official": {"img_s": 300.0, "peak_memory_mib": 256.0, "pipeline": "per-image"}}})
    report["steps"]["smoke"].update(status="failed", wall_s=9.0, error="failed families: etf")
    report["summary"] = gpu._summarise(report)
    monkeypatch.setattr(gpu, "run_check", lambda options, argv=None: report)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rows = {r.name: r for r in gpu.run(quick=False)}
    ratio = rows["epoch throughput ours vs official-style"]
    assert (ratio.value, ratio.baseline, ratio.ratio, ratio.target, ratio.passed) == (900.0, 300.0, 3.0, ">= 3x", True)
    assert rows["peak GPU memory throughput/official"].value == 256.0
    assert rows["step smoke"].passed is False and rows["step smoke"].note.startswith("failed: failed families")
    assert rows["step env"].passed is None  # pending/skipped steps have no verdict
    assert report["summary"]["ratio_vs_official"] == {"ours": 3.0, "official": 1.0}
    md = gpu.format_markdown(report)
    assert "| ours | 900 | 3x | 512 | batched |" in md and "| smoke | failed | 9 |" in md
