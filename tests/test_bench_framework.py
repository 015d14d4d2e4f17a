import json

from neuralcollapse.bench import BenchRow, format_table, ratio_row, time_call, write_results
from neuralcollapse.cli import main


def test_ratio_row_targets():
    row = ratio_row("g", "fast", 1.5, 1.0, max_ratio=2.0)
    assert row.ratio == 1.5 and row.passed is True and row.target == "<= 2x"
    row = ratio_row("g", "speedup", 2.0, 1.0, min_ratio=3.0)
    assert row.passed is False and row.target == ">= 3x"
    assert ratio_row("g", "x", 1.0, 0.0).ratio == float("inf")


def test_time_call_counts_calls():
    calls = []
    t = time_call(lambda: calls.append(1), repeat=3, warmup=2)
    assert len(calls) == 5 and t >= 0


def test_table_and_files(tmp_path):
    rows = [BenchRow("g", "a", 0.5, "s"), ratio_row("g", "b", 2.0, 1.0, max_ratio=1.0)]
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| group | benchmark |")
    assert "| g | b | 2 | s | 1 | 2x | <= 1x | NO |" in table
    piped = format_table([BenchRow("g", "a", 1.0, "s", note="max |diff| 1e-7")]).splitlines()[2]
    assert piped.endswith("| max \\|diff\\| 1e-7 |") and piped.replace("\\|", "").count("|") == 10
    folder = write_results(rows, tmp_path / "out")
    data = json.loads((folder / "bench.json").read_text())
    assert [r["name"] for r in data["rows"]] == ["a", "b"] and "torch" in data["meta"]


def test_cli_unknown_bench_group(capsys):
    import pytest

    with pytest.raises(SystemExit, match="unknown group"):
        main(["bench", "nope"])


def test_cli_no_args_prints_help(capsys):
    assert main([]) == 0
    assert "usage: neuralcollapse" in capsys.readouterr().out
