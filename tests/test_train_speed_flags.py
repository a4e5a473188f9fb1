"""train.py with --amp (bfloat16 on the CPU), --channels_last and --compile: a few steps with
finite losses, checkpoints in the standard format (CPU, tiny data)."""
import json

import pytest
import torch

import train
from tests.helpers import reference_train_args
from util.perf import compile_unsupported_reason


@pytest.fixture(scope="module")
def data_root(tiny_data):
    return tiny_data


def read_run(folder):
    """(loss_log.jsonl's records, latest_net_G.pth's state_dict) of a run's folder."""
    with open(folder / "loss_log.jsonl") as f:
        records = [json.loads(line) for line in f]
    return records, torch.load(folder / "latest_net_G.pth", weights_only=True)


def run(data_root, tmp_path, name, *flags):
    """conftest's reference_run with ``flags`` added: 2 steps of 8 images."""
    assert train.main(reference_train_args(data_root, tmp_path, name, *flags)) == 0
    return read_run(tmp_path / name)


def check_standard(records, state, reference):
    assert len(records) == 2  # two steps, both taken
    assert all(torch.isfinite(torch.tensor(list(r["raw"].values()))).all() for r in records)
    assert list(state) == list(reference) and len(state) == 107
    for key, value in state.items():  # float32 NCHW tensors, as an fp32 run writes them
        assert value.dtype == reference[key].dtype and value.shape == reference[key].shape and value.is_contiguous()


@pytest.fixture(scope="module")
def fp32(reference_run):
    """The default float32 run of the same steps (shared with tests/test_train.py)."""
    return read_run(reference_run)


def test_amp_bfloat16_on_cpu(data_root, tmp_path, fp32):
    records, state = run(data_root, tmp_path, "amp", "--amp")
    check_standard(records, state, fp32[1])
    # Same data, hints and initial weights: the first step's losses agree with fp32 to bf16 precision.
    first, ref = records[0]["raw"], fp32[0][0]["raw"]
    assert first["G_L1_reg"] == pytest.approx(ref["G_L1_reg"], rel=0.02)
    assert first["G_CE"] == pytest.approx(ref["G_CE"], rel=0.02)
    assert first["G_CE"] != ref["G_CE"]  # and it really ran in bfloat16


def test_channels_last(data_root, tmp_path, fp32):
    records, state = run(data_root, tmp_path, "cl", "--channels_last")
    check_standard(records, state, fp32[1])
    # A memory layout, not a different computation: fp32 results agree to summation order.
    assert records[0]["raw"]["G"] == pytest.approx(fp32[0][0]["raw"]["G"], rel=1e-4)


@pytest.mark.skipif(compile_unsupported_reason(torch.device("cpu")) is not None,
                    reason=f"torch.compile unsupported here: {compile_unsupported_reason(torch.device('cpu'))}")
def test_compile_with_amp_and_channels_last(data_root, tmp_path, fp32, capsys):
    """The fast combination; the first step includes the compilation (about a minute on 2 cores)."""
    records, state = run(data_root, tmp_path, "all", "--compile", "--amp", "--channels_last")
    assert "running in eager mode" not in capsys.readouterr().err  # it really compiled
    check_standard(records, state, fp32[1])
    assert records[0]["raw"]["G_L1_reg"] == pytest.approx(fp32[0][0]["raw"]["G_L1_reg"], rel=0.02)
