"""Smoke tests of benchmarks/: each runs at a tiny size and prints the promised JSON keys.

No timing is asserted (the benchmarks print figures; they are not tests). What is asserted is
behaviour: the baseline loop of bench_prep makes the same kind of batch as util.hints, the two
sweep modes give the same PSNRs, a configuration's flags reach the model.
"""
import json
import math

import numpy as np
import pytest
import torch

from benchmarks import bench_prep, bench_sweep, bench_train, gpu_report
from util.hints import get_colorization_data

CPU = ["--device", "cpu"]


def json_lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_prep_keys(capsys):
    assert bench_prep.main(CPU + ["--batch_size", "2", "--size", "16", "--repeats", "1", "--warmup", "0",
                                  "--num_points", "20"]) == 0
    (record,) = json_lines(capsys)
    for key in ("train_prep_img_s", "sweep_prep_img_s", "train_prep_loop_img_s", "sweep_prep_loop_img_s",
                "train_ratio", "sweep_ratio", "train_hints_ratio", "sweep_hints_ratio"):
        assert positive(record[key]), key
    assert record["device"] == "cpu" and record["torch"] == torch.__version__
    assert (record["batch_size"], record["size"], record["num_points"]) == (2, 16, 20)
    assert 0 < record["check"]["sweep_mask_fraction"]["loop"] <= 1


def test_bench_prep_baseline_makes_the_same_kind_of_batch():
    """Same fields, shapes and dtypes as get_colorization_data; patch-mean hints; the same hint
    coverage within sampling error (geometric counts, p = 1/8, patches 1..9, normal placement)."""
    rgb = torch.rand(400, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rng = np.random.RandomState(0)
    ours = get_colorization_data(rgb, p=0.125, generator=torch.Generator().manual_seed(1))
    loop = bench_prep.loop_colorization_data(rgb, rng, ab_thresh=5.0, p=0.125, num_points=None,
                                             sample_Ps=range(1, 10))
    for field in ("A", "B", "hint_B", "mask_B", "keep"):
        a, b = getattr(ours, field), getattr(loop, field)
        assert a.shape == b.shape and a.dtype == b.dtype, field
    assert torch.equal(ours.A, loop.A) and torch.equal(ours.B, loop.B)
    cover_ours, cover_loop = (ours.mask_B + 0.5).mean((1, 2, 3)), (loop.mask_B + 0.5).mean((1, 2, 3))
    se = math.sqrt(cover_ours.var() / 400 + cover_loop.var() / 400)
    assert abs(float(cover_ours.mean() - cover_loop.mean())) < 4 * se
    # One-pixel patches: the hint is the ground truth there; exactly 3 points per image.
    hint, mask = bench_prep.loop_hints(ours.B[:50], rng, 1.0, 3, [1])
    on = mask.expand_as(hint) > 0
    assert torch.equal(hint[on], ours.B[:50][on]) and (hint[~on] == 0).all()
    assert ((mask.flatten(1).sum(1) >= 1) & (mask.flatten(1).sum(1) <= 3)).all()


def test_bench_train_configs_in_process_and_isolated(capsys):
    tiny = CPU + ["--batch_size", "2", "--size", "16", "--steps", "1", "--warmup", "0", "--peak_tflops", "2",
                  "--peak_tflops_fp32", "1"]
    assert bench_train.main(tiny + ["--in_process", "--configs", "amp", "channels_last"]) == 0
    amp, nhwc, summary = json_lines(capsys)
    assert (amp["config"], amp["amp"], amp["channels_last"], amp["compiled"]) == ("amp", True, False, False)
    assert (nhwc["config"], nhwc["amp"], nhwc["channels_last"]) == ("channels_last", False, True)
    for record, peak in ((amp, 2), (nhwc, 1)):
        assert positive(record["train_img_s"]) and positive(record["achieved_tflops"])
        assert record["mfu"] == pytest.approx(record["achieved_tflops"] / peak, rel=0.01, abs=1e-4)
        assert record["peak_mem_gib"] is None  # two configurations shared the process
        assert record["skipped_steps"] == 0 and record["batch_size"] == 2 and record["size"] == 16
    assert summary["summary"] and summary["baseline"] == "amp" and summary["speedup"]["amp"] == 1.0
    assert set(summary["train_img_s"]) == {"amp", "channels_last"} and summary["failed"] == []
    # The default: each configuration in its own process, where CPU peak memory is measured.
    assert bench_train.main(tiny + ["--configs", "fp32"]) == 0
    fp32, summary = json_lines(capsys)
    assert fp32["config"] == "fp32" and not fp32["amp"] and positive(fp32["peak_mem_gib"])
    assert fp32["peak_mem_gib"] > 34e6 * 4 * 4 / 2**30  # weights, gradients and two Adam moments
    assert summary["baseline"] == "fp32" and summary["not_slower_than_baseline"] == ["fp32"]
    # A configuration over --config_timeout_s is stopped and reported; the run says it failed.
    assert bench_train.main(tiny + ["--configs", "fp32", "--config_timeout_s", "0.5"]) == 1
    stopped, summary = json_lines(capsys)
    assert stopped == {"config": "fp32", "error": "stopped after --config_timeout_s 0.5 s"}
    assert summary["failed"] == ["fp32"] and summary["baseline"] is None


def test_bench_sweep_modes_agree(capsys):
    assert bench_sweep.main(CPU + ["--size", "16", "--batches", "1", "--warmup", "0"]) == 0
    (record,) = json_lines(capsys)
    assert positive(record["sweep_batched_img_s"]) and positive(record["sweep_one_level_img_s"])
    assert positive(record["batching_ratio"])
    assert record["levels"] == 26 and record["rows_per_forward"] == 26
    assert record["psnr_max_abs_diff_db"] <= 1e-3  # same hints, same model: summation order only


@pytest.mark.parametrize("script, argv, message", [
    (bench_prep, ["--device", "nonsense"], "--device"),
    (bench_train, CPU + ["--size", "20"], "multiple of 8"),
    (bench_train, CPU + ["--configs", "fp16"], "--configs"),
    (bench_train, CPU + ["--in_process", "--config_timeout_s", "5"], "drop --in_process"),
    (bench_sweep, CPU + ["--batches", "0"], "--batches"),
])
def test_bad_arguments_are_one_line_errors(script, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_gpu_report_summarises_what_the_stages_left(tmp_path, capsys):
    """gpu_check.sh's summary: ratios from the stages' JSON lines; a missing stage or a failed
    configuration is reported, not fatal."""
    def train(config, img_s, mfu):
        return {"config": config, "batch_size": 64, "size": 176, "train_img_s": img_s, "achieved_tflops": 1.0,
                "mfu": mfu, "peak_mem_gib": 9.5, "warmup_s": 1.0, "compiled": "compile" in config}
    lines = [train("fp32", 500.0, 0.2), train("amp+channels_last+compile", 1250.0, 0.1),
             {"config": "compile", "error": "stopped after --config_timeout_s 150 s"}, {"summary": True}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"config": "cut by a time')
    sweep = {"name": "NVIDIA H200", "torch": "2.x", "size": 176, "rows_per_forward": 26, "sweep_batched_img_s": 40.0,
             "sweep_one_level_img_s": 4.0, "batching_ratio": 10.0, "psnr_max_abs_diff_db": 0.0}
    (tmp_path / "sweep.jsonl").write_text("not json\n" + json.dumps(sweep) + "\n")
    assert gpu_report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "device: NVIDIA H200" in out and "batch prep: no result" in out and "compile" in out
    assert "failed: stopped after --config_timeout_s 150 s" in out and "20.0%" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["fp32_to_combo_ratio"] == 2.5 and summary["sweep"]["batching_ratio"] == 10.0
    assert summary["train_failed"] == {"compile": "stopped after --config_timeout_s 150 s"} and "prep" not in summary


def test_bench_probes_options_are_the_scripts_defaults(tmp_path):
    """bench_probes builds its options by hand (it may not import the script): they must be what
    train_linear_classifiers.py parses from the same flags, so the benchmark times the real protocol."""
    from argparse import Namespace

    from benchmarks import bench_probes
    from scripts.run_entry_points import load_script

    tlc = load_script("train_linear_classifiers.py")
    args = Namespace(size=64, batch_size=25, gpu_ids="-1", num_threads=0)
    for protocol in ("corrected", "fork"):
        bench = bench_probes.probe_options(args, str(tmp_path), "out", protocol, 3)
        script, _ = tlc.parse(["--name", "rand", "--checkpoints_dir", bench.checkpoints_dir,
                               "--linear_checkpoints", bench.linear_checkpoints, "--dataroot", bench.dataroot,
                               "--dataroot_validation", bench.dataroot_validation, "--niter", "3",
                               "--gpu_ids", "-1", "--num_threads", "0", "--protocol", protocol,
                               "--loadSize", "64", "--fineSize", "64", "--cache_dir", bench.cache_dir])
        assert vars(bench) == vars(script)
