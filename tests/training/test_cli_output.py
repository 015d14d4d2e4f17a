"""What ``neuralcollapse train``/``evaluate`` print (non-TTY lines, the rich bar's epoch/ETA/phase) and the CLI's
refusals, merge semantics and consistency rules (issue 13: "Output people can log", "The CLI")."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
import torch

from neuralcollapse.cli import build_parser, main
from neuralcollapse.training.commands import build_train_config

pytest.importorskip("lightning")

NUM = r"\d+\.\d{4}"
HMS = r"\d+:\d\d:\d\d"


def parse(*argv: str):
    return build_train_config(build_parser().parse_args(["train", *argv]))[0]


def cli(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with stdout and stderr to pipes (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "neuralcollapse", *argv], capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------ non-TTY output
@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("piped") / "run"
    result = cli("train", "--epochs", "2", "--train-subset", "200", "--model", "mlp", "--set",
                 "model_kwargs={hidden: [32]}", "--no-plots", "--no-tensorboard", "--out", str(out))
    return out, result


@pytest.mark.slow
def test_train_to_a_pipe_prints_one_line_per_epoch(piped_run):
    out, result = piped_run
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2, result.stdout
    for i, line in enumerate(epoch_lines, start=1):
        assert re.fullmatch(
            rf"epoch {i}/2 · loss {NUM} · train acc {NUM} · test acc {NUM} · NC1 train {NUM} test {NUM} · "
            rf"elapsed {HMS} · ETA {HMS}", line), line
    assert epoch_lines[-1].endswith("ETA 0:00:00")
    # the bar's frames are absent; the final table's title counts epochs as the lines do (1-indexed)
    assert "it/s" not in result.stdout and "Epoch 1/" not in result.stdout
    assert "after epoch 2" in result.stdout
    # the lines report the metrics the run recorded
    import json

    rows = json.loads((out / "metrics.json").read_text())
    assert f"test acc {rows[-1]['test/acc']:.4f}" in epoch_lines[-1]
    assert f"NC1 train {rows[-1]['train_nc/nc1']:.4f}" in epoch_lines[-1]


@pytest.mark.slow
def test_evaluate_to_a_pipe_prints_its_phases(piped_run):
    out, _ = piped_run
    # comma- and space-separated lists are the same
    result = cli("evaluate", "--checkpoint", str(out), "--ood", "gaussian", "--detectors", "msp,vim", "energy",
                 "--device", "cpu")
    assert result.returncode == 0, result.stderr
    phases = [line for line in result.stdout.splitlines() if line.startswith("evaluate · ")]
    texts = [line.split(" · ", 2)[2] for line in phases]
    assert all(re.fullmatch(rf"evaluate · {HMS} · .+", line) for line in phases)
    assert texts[0].startswith("loading ")
    assert "extracting features: train split (200 images)" in texts
    assert any(t.startswith("extracting features: test split (") for t in texts)
    assert any(t.startswith("extracting features: OOD set gaussian (") for t in texts)
    assert [t for t in texts if t.startswith("OOD detector")] == [
        "OOD detector 1/3: msp (fit on the train split, score every set)",
        "OOD detector 2/3: vim (fit on the train split, score every set)",
        "OOD detector 3/3: energy (fit on the train split, score every set)",
    ]


def test_run_clock_eta_is_whole_run():
    now = [0.0]
    from neuralcollapse.training.progress import RunClock, format_duration

    clock = RunClock(0, 10, clock=lambda: now[0])
    assert clock.eta(0) is None  # nothing measured yet
    now[0] = 5.0
    assert clock.eta(0, fraction=0.5) == pytest.approx(5.0 / 0.5 * 10 - 5.0)  # 95 s: 10 epochs of 10 s, 5 spent
    now[0] = 12.0
    clock.epoch_done(1)  # epoch 1 (training + evaluation) took 12 s
    assert clock.eta(1) == pytest.approx(9 * 12.0)
    now[0] = 16.0  # 4 s into epoch 2
    assert clock.eta(1) == pytest.approx(9 * 12.0 - 4.0)
    resumed = RunClock(7, 10, clock=lambda: now[0])  # resumed after epoch 7: only this process's epochs count
    now[0] = 26.0
    resumed.epoch_done(8)
    assert resumed.eta(8) == pytest.approx(2 * 10.0)
    assert resumed.eta(10) == 0.0
    assert (format_duration(0), format_duration(59.6), format_duration(3600 * 2 + 61)) == ("0:00:00", "0:01:00",
                                                                                           "2:01:01")


def _bar_with(max_epochs: int):
    from neuralcollapse.training.progress import TRAIN_NC_PHASE, RunClock, progress_bar

    class Tty:
        def isatty(self) -> bool:
            return True

    bar = progress_bar(Tty())
    bar._trainer = SimpleNamespace(max_epochs=max_epochs, sanity_checking=False, current_epoch=max_epochs - 1,
                                   num_training_batches=10)
    return bar, TRAIN_NC_PHASE, RunClock


def test_rich_bar_counts_epochs_from_one_and_shows_eta_and_phase():
    from lightning.pytorch.callbacks import RichProgressBar

    bar, nc_phase, RunClock = _bar_with(25)
    assert isinstance(bar, RichProgressBar)
    # the last epoch is "Epoch 25/25", as the summary's "after epoch 25" (Lightning's own bar said 24/24)
    assert bar._get_train_description(24) == "Epoch 25/25"
    t = iter([0.0, 30.0, 30.0])
    bar.run_clock = RunClock(0, 25, clock=lambda: next(t))
    bar.run_clock.epoch_done(1)
    assert bar._get_train_description(1) == "Epoch 2/25 · run ETA 0:12:00"  # 24 epochs × 30 s
    module = SimpleNamespace(nc_epoch=lambda: True, config=SimpleNamespace(nc_on_train=True))
    bar.on_validation_epoch_start(bar._trainer, module)  # before the module's NC pass over the train split
    assert bar._get_train_description(24) == f"Epoch 25/25 · {nc_phase}"
    bar.on_validation_epoch_start(bar._trainer, SimpleNamespace())
    assert bar._get_train_description(24) == "Epoch 25/25 · evaluating on the test set…"


def test_progress_choice_follows_the_terminal():
    import io

    from neuralcollapse.training.progress import LineProgress, progress_bar

    assert isinstance(progress_bar(io.StringIO()), LineProgress)
    from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

    assert isinstance(progress_bar(io.StringIO()), ProgressBar)  # so Lightning adds no bar of its own


# ------------------------------------------------------------------------------------ one-line errors
def test_download_without_network_is_one_line(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code = main(["train", "--dataset", "mnist", "--download", "--data-dir", str(tmp_path / "data"), "--out",
                 str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    # one message (its first line says what failed, a hint may follow), no traceback
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert err.startswith("neuralcollapse train: error: ") and "downloading https://" in err and "URLError" in err
    assert "Without internet access, fetch the file elsewhere and put it at" in err


@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_gpu_accelerator_without_a_gpu_is_one_line(accelerator, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["train", "--accelerator", accelerator, "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.match(rf"neuralcollapse train: error: --accelerator {accelerator} needs a CUDA GPU, but .*; use "
                    r"--accelerator cpu, or auto", err), err
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing was recorded for a run that did not run


def test_evaluate_cuda_device_without_a_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["evaluate", "--checkpoint", str(tmp_path), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("neuralcollapse evaluate: error: --device cuda needs a CUDA GPU")


# ------------------------------------------------------------------------------------ refuse or warn
def test_more_cpu_processes_than_cores_warns_and_runs_as_asked(monkeypatch, capsys, tmp_path):
    from neuralcollapse.training import runner
    from neuralcollapse.training.config import TrainConfig

    monkeypatch.setattr(runner, "_cpu_cores", lambda: 2)
    with pytest.warns(runner.RunSettingWarning, match=r"--devices 3 starts 3 CPU processes \(DDP\) on 2 core"):
        runner.check_hardware(TrainConfig(accelerator="cpu", devices=3))
    with warnings_as_errors():
        runner.check_hardware(TrainConfig(accelerator="cpu", devices=2))  # one process per core: silent

    seen = {}

    def fake_fit(config, resume=False):
        runner.check_hardware(config)
        seen["devices"] = config.devices
        raise ValueError("stopped after the checks")

    monkeypatch.setattr(runner, "fit", fake_fit)
    assert main(["train", "--accelerator", "cpu", "--devices", "3", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("neuralcollapse train: warning: --devices 3 starts 3 CPU processes") and len(err) == 2
    assert seen["devices"] == 3  # the config that runs (and config.yaml) says what was asked


class warnings_as_errors:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def test_objective_and_a_conflicting_loss_are_refused(capsys):
    for extra in (["--loss", "ce"], ["--set", "loss=ce"]):
        assert main(["train", "--objective", "ntce", *extra, "--print-config"]) == 2
        err = capsys.readouterr().err
        assert re.search(r"--objective ntce sets the loss 'ntce' \(head 'cosine'\); --(loss |set loss=)'ce' would "
                         r"replace it while config\.yaml and the run name still say ntce\. Give one: --objective "
                         r"ntce alone, or --loss ce --head cosine without --objective", err), err
    # the same terms with another weight is a weight change, as --gamma: allowed and recorded
    cfg = parse("--objective", "ntce", "--loss", "ntce")
    assert (cfg.objective, cfg.loss, cfg.head) == ("ntce", "ntce", "cosine")
    cfg = parse("--objective", "lpc", "--loss", "ce+2*lpc")
    assert (cfg.objective, cfg.loss) == ("lpc", "ce+2*lpc")


def _fake_run(folder, *, epoch_done: int, epochs: int):
    ckpt = folder / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "epoch": epoch_done - 1,
                "hyper_parameters": {"config": {"epochs": epochs, "out": str(folder)}}}, ckpt)


def test_resume_with_nothing_left_to_train_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    _fake_run(run, epoch_done=3, epochs=3)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"nothing to train: {str(run)!r} has already finished epoch 3 (of 3), so resuming with --epochs 2 " \
           "runs no epoch; pass --epochs N with N > 3 to train further" in err
    assert main(["train", "--resume", str(run)]) == 2
    assert "resuming with its own 3 epochs runs no epoch" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    config, resume = build_train_config(build_parser().parse_args(["train", "--resume", str(run), "--epochs", "5"]))
    assert resume and config.epochs == 5


# ------------------------------------------------------------------------------------ head size, merging
def test_etf_head_size_error_names_the_head_not_the_backbone(tmp_path, capsys):
    assert main(["train", "--head", "etf", "--loss", "dot_regression", "--set", "head_kwargs={dim: 3}",
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the head's size is 3 (head_kwargs dim = 3; the backbone 'mlp' gives d = 256)" in err
    assert "Use head_kwargs dim >= 9" in err and "the backbone 'mlp' gives d = 3" not in err


def test_set_merges_mappings_into_the_preset():
    from neuralcollapse.training.presets import OBJECTIVES

    hpn = parse("--objective", "hpn", "--set", "head_kwargs={dim: 3}")
    # HPN stays HPN (it became DL2PA when replaced): its prototypes and its fixed assignment are kept
    assert hpn.head_kwargs == {"method": "hpn", "initial_assignment": "identity", "dim": 3}
    dl2pa = parse("--objective", "dl2pa", "--set", "head_kwargs={dim: 3}")
    assert dl2pa.head_kwargs == {**OBJECTIVES["dl2pa"].settings["head_kwargs"], "dim": 3}
    assert hpn.head_kwargs != dl2pa.head_kwargs
    # later --set wins key by key; null empties the mapping first, so this replaces it
    assert parse("--objective", "hpn", "--set", "head_kwargs={dim: 3}", "--set", "head_kwargs={dim: 5}"
                 ).head_kwargs == {"method": "hpn", "initial_assignment": "identity", "dim": 5}
    assert parse("--objective", "hpn", "--set", "head_kwargs=null", "--set", "head_kwargs={dim: 3}"
                 ).head_kwargs == {"dim": 3}
    # loss_kwargs merge per term
    cfg = parse("--objective", "supcon", "--set", "loss_kwargs={supcon: {base_temperature: 0.1}}")
    assert cfg.loss_kwargs == {"supcon": {"temperature": 0.05, "base_temperature": 0.1}}
    # non-mapping values replace; a mapping given for a string field replaces it too
    assert parse("--set", "epochs=3", "--set", "epochs=4").epochs == 4


def test_compare_set_merges_the_same_way():
    from neuralcollapse.experiments.compare import CompareSettings, _base_config

    cfg = _base_config(CompareSettings(objectives=["hpn"], overrides={"head_kwargs": {"dim": 3}}), "hpn", 0)
    assert cfg.head_kwargs == {"method": "hpn", "initial_assignment": "identity", "dim": 3}


# ------------------------------------------------------------------------------------ library = CLI
def test_objective_and_train_agree_on_which_heads_a_term_needs():
    from neuralcollapse import heads
    from neuralcollapse.losses import Objective
    from neuralcollapse.output import HeadOutput
    from neuralcollapse.training.config import all_head_fields, check_head_provides

    g = torch.Generator().manual_seed(0)
    h, y = torch.randn(12, 8, generator=g), torch.arange(12) % 4
    terms = ("proto_align", "ntce", "nonl", "normface", "arcface", "cosface", "dot_regression", "ce", "occe")
    checked = 0
    for head_name in all_head_fields():
        head = heads.create(head_name, in_features=8, num_classes=4).eval()
        with torch.no_grad():
            out = head(h)
        assert isinstance(out, HeadOutput)
        for term in terms:
            try:
                check_head_provides(head_name, [term])
                cli_ok = True
            except ValueError:
                cli_ok = False
            try:
                Objective.parse(term)(out, y)
                lib_ok = True
            except ValueError:
                lib_ok = False
            assert cli_ok == lib_ok, (head_name, term, cli_ok, lib_ok)
            checked += 1
    assert checked >= 5 * len(terms)
    linear = heads.create("linear", in_features=8, num_classes=4)
    with pytest.raises(ValueError, match=r"needs the head output's `cosines` \(cosine logits"):
        Objective.parse("proto_align")(linear(h), y)
    with pytest.raises(ValueError, match="loss term 'proto_align' needs cosine logits"):
        check_head_provides("linear", ["proto_align"])


def test_vim_default_dimension_is_one_library_rule():
    from neuralcollapse import ood
    from neuralcollapse.ood.vim import default_dim

    assert (default_dim(512), default_dim(2048), default_dim(7), default_dim(1)) == (256, 1024, 3, 1)
    g = torch.Generator().manual_seed(1)
    f, w, b = torch.randn(200, 12, generator=g), torch.randn(4, 12, generator=g), torch.randn(4, generator=g)
    auto = ood.create("vim")
    assert auto.dim is None and dict(type(auto).defaults) == {"dim": None}
    auto.fit(features=f, weight=w, bias=b)
    explicit = ood.create("vim", dim=6).fit(features=f, weight=w, bias=b)
    assert auto.dim_ == 6
    assert torch.equal(auto.score(features=f[:10]), explicit.score(features=f[:10]))
    # evaluate/compare no longer carry a rule of their own
    import neuralcollapse.training.evaluation as evaluation

    assert not hasattr(evaluation, "VIM_NARROW_FRACTION")


# ------------------------------------------------------------------------------------ consistency
def test_lists_take_commas_or_spaces_in_evaluate_and_compare(monkeypatch, capsys):
    from neuralcollapse.experiments import compare
    from neuralcollapse.training.commands import split_list

    assert split_list(["a,b", "c", " d , e"]) == ["a", "b", "c", "d", "e"] and split_list(None) is None
    seen = {}
    monkeypatch.setattr(compare, "run_compare", lambda settings: seen.setdefault("s", settings))
    assert main(["compare", "--objectives", "ce", "ce+occe,nonl", "--detectors", "msp", "vim,knn", "--ood",
                 "svhn"]) == 0
    s = seen["s"]
    assert (list(s.objectives), list(s.detectors), s.ood_set) == (["ce", "ce+occe", "nonl"], ["msp", "vim", "knn"],
                                                                 "svhn")
    seen.clear()
    assert main(["compare", "--objectives", "ce,nonl", "--detectors", "msp,vim", "--ood-set", "svhn"]) == 0
    assert (list(seen["s"].objectives), list(seen["s"].detectors)) == (["ce", "nonl"], ["msp", "vim"])
    assert main(["compare", "--ood", "svhn,cifar100"]) == 2
    assert "compare evaluates one OOD set" in capsys.readouterr().err


def _subparser(name: str) -> argparse.ArgumentParser:
    return build_parser()._subparsers._group_actions[0].choices[name]


def test_every_train_flag_has_help_and_its_default():
    train = _subparser("train")
    for action in train._actions:
        if action.dest == "help":
            continue
        flag = action.option_strings[0]
        assert action.help, flag
        assert "(default" in action.help, flag
    text = train.format_help()
    assert "--val-interval N" in text and "VAL_EVERY" not in text
    assert "--epochs N" in text and "training epochs (default: 25)" in text
    assert "MERGES into the one the preset/recipe set" in text


def test_evaluate_and_compare_help():
    from neuralcollapse.training.evaluation import DEFAULT_DETECTORS

    evaluate = _subparser("evaluate")
    assert evaluate.description and evaluate.description.startswith("Evaluate a checkpoint")
    assert " ".join(DEFAULT_DETECTORS) in " ".join(evaluate.format_help().split())
    from neuralcollapse.training import commands

    assert commands.DEFAULT_DETECTORS == DEFAULT_DETECTORS


def test_a_bad_value_prints_two_lines_not_the_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--lr", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["usage: neuralcollapse train [options]  (`neuralcollapse train --help` lists them)",
                   "neuralcollapse train: error: argument --lr: invalid float value: 'abc'"]


def test_run_names_carry_a_non_default_head():
    assert parse("--objective", "dl2pa").run_name() == "digits-mlp-dl2pa-s0"
    assert parse("--objective", "dl2pa", "--head", "etf").run_name() == "digits-mlp-etf-dl2pa-s0"
    assert parse("--head", "prototypes").run_name() == "digits-mlp-prototypes-ce+occe-s0"
    assert parse().run_name() == "digits-mlp-ce+occe-s0"
    assert parse("--objective", "ntce", "--seed", "2").run_name() == "digits-mlp-ntce-s2"
    assert parse("--recipe", "occe-cifar100-resnet18:ce", "--head", "dual").run_name() == (
        "occe-cifar100-resnet18-ce-dual-s0")


def test_compare_numbers_have_four_significant_digits():
    from neuralcollapse.experiments.compare import _sig4

    assert [_sig4(v) for v in (0.18235383812999473, 0.8644, 1, 1.2345e-5, None)] == [
        "0.1824", "0.8644", "1.000", "1.234e-05", "–"]


def test_help_imports_no_torch_and_is_fast():
    from neuralcollapse import bench
    from neuralcollapse.cli import BENCH_GROUPS
    from neuralcollapse.experiments import commands as exp_commands
    from neuralcollapse.experiments.compare import DEFAULT_OBJECTIVES

    assert tuple(bench.GROUPS) == BENCH_GROUPS and exp_commands.DEFAULT_OBJECTIVES == DEFAULT_OBJECTIVES
    code = ("import sys; from neuralcollapse.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert time.perf_counter() - start < 10  # ~0.15 s measured; generous for a loaded CI machine
