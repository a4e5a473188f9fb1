"""--amp, --channels_last and --compile in test.py, test_sweep.py and the linear probes (CPU, 32 px).

Tolerances against the default float32 run. bfloat16 keeps 8 significant bits: each rounding is
off by up to 2^-9 (0.2 %) relative, and the generator chains ~24 convolutions, so its outputs move
by a few 0.1 % relative (measured on the probe features: 0.4 % at conv1 to 1 % at conv5; bound
3 %). The metrics are computed in float32 on uint8 images made from those outputs, and most of
that vanishes in the quantisation: measured on this data, |dPSNR| <= 3e-4 dB (test.py) and
4e-4 dB (sweep), |dcolourfulness| <= 2e-3, |dCIEDE2000| <= 1e-3, SSIM, AuC and saturation
<= 1e-4; the bounds below are at least 10x those. --channels_last and --compile compute the same
float32 function in another order: bit-identical uint8 images on this data, features within 2e-6
relative; bounded like the batched-vs-single check of tests/test_sweep.py (1e-3 dB) and 1e-5.
"""
import json
import os

import numpy as np
import pytest
import torch

import test_sweep
import train_linear_classifiers as tlc
import util.perf
from data.datasets import ImageFolderDataset, eval_subset
from data.transforms import eval_transform
from models import create_model, load_generator, probes
from options.test_options import TestOptions
from options.train_options import TrainOptions
from evaluation.layout_dataset import make_layout_dataset
from tests.helpers import METRIC_KEYS, copy_checkpoint, load_test_script, probe_args
from util.color import lab_norm2rgb
from util.hints import get_colorization_data
from util.image import to_uint8
from util.metrics import psnr_uint8
from evaluation.sweep import SWEEP_NUM_POINTS, sweep_hints

#: |amp - fp32| bounds per test.py metric (at least 10x the differences measured, see above).
AMP_TOL = {"psnr": 5e-3, "ssim": 1e-3, "colorfulness": 0.02, "saturation": 1e-3, "colorfulness_real": 0,
           "saturation_real": 0, "auc": 1e-3, "ciede2000": 0.01, "entropy": 1e-3}
AMP_SWEEP_TOL_DB = 5e-3
REORDER_TOL_DB = 1e-3
NO_COMPILER = "no compiler in this test"


test_script = load_test_script()


@pytest.fixture(scope="module")
def env(eval_env):
    """4 flat 40 px val photos (data/val) and a seeded random-init checkpoint <ckpt>/m/latest_net_G.pth."""
    return eval_env


def eval_args(env, results, *flags):
    return ["--dataroot", str(env / "data" / "val"), "--checkpoints_dir", str(env / "ckpt"), "--name", "m",
            "--results_dir", str(results), "--loadSize", "32", "--how_many", "2", "--gpu_ids", "-1",
            "--num_threads", "0", *flags]


class Runs:
    """test.py and test_sweep.py runs by flag set, each run once; the model each one built is kept."""

    def __init__(self, env):
        self.env, self.cache, self.models = env, {}, {}

    def _run(self, script, tag, flags):
        key = (script.__name__, tuple(flags))
        if key not in self.cache:
            built = []
            real_create = script.create_model
            script.create_model = lambda *a, **k: built.append(real_create(*a, **k)) or built[-1]
            try:
                extra = ["--sample_Ps", "6"] if script is test_sweep else []
                results = self.env / f"{tag}_{'_'.join(f.strip('-') for f in flags) or 'default'}"
                assert script.main(eval_args(self.env, results, *extra, *flags)) == 0
            finally:
                script.create_model = real_create
            sub = "sweep_latest/sweep.json" if script is test_sweep else "val_latest/metrics.json"
            self.cache[key] = json.loads((results / "m" / sub).read_text())
            self.models[key] = built[0]
        return self.cache[key], self.models[key]

    def test_py(self, *flags):
        return self._run(test_script, "test", flags)

    def sweep(self, *flags):
        return self._run(test_sweep, "sweep", flags)


@pytest.fixture(scope="module")
def runs(env):
    return Runs(env)


def metric_diffs(a, b):
    """Largest |a - b| per metric over every image and setting of two metrics.json."""
    out = {key: 0.0 for key in METRIC_KEYS}
    for sa, sb in zip(a["settings"], b["settings"]):
        assert [i["path"] for i in sa["images"]] == [i["path"] for i in sb["images"]]
        for ia, ib in zip(sa["images"], sb["images"]):
            for key in METRIC_KEYS:
                out[key] = max(out[key], abs(ia[key] - ib[key]))
    return out


# ----------------------------------------------------------------------------------------------
# Evaluation scripts
# ----------------------------------------------------------------------------------------------

def test_eval_amp_runs_in_bfloat16_close_to_fp32(runs):
    fp32, _ = runs.test_py()
    amp, model = runs.test_py("--amp")
    assert model.amp and model.fake_B_reg.dtype == torch.bfloat16  # the generator really ran in bf16
    assert model.fake_B_distr.dtype == torch.float32  # the decoding and metrics did not
    diffs = metric_diffs(fp32, amp)
    assert all(diffs[key] <= AMP_TOL[key] for key in METRIC_KEYS), diffs
    sweep32, _ = runs.sweep()
    sweep_amp, model = runs.sweep("--amp")
    assert model.amp
    difference = np.abs(np.array(sweep_amp["psnr"]) - np.array(sweep32["psnr"]))
    assert difference.max() <= AMP_SWEEP_TOL_DB, difference.max()


def test_eval_channels_last_close_to_fp32(runs):
    fp32, _ = runs.test_py()
    nhwc, model = runs.test_py("--channels_last")
    assert model.netG.model1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.netG.model1[0].weight.is_contiguous()
    diffs = metric_diffs(fp32, nhwc)
    assert diffs["psnr"] <= REORDER_TOL_DB and diffs["ciede2000"] <= 1e-3 and diffs["ssim"] <= 1e-4, diffs
    sweep32, _ = runs.sweep()
    sweep_nhwc, _ = runs.sweep("--channels_last")
    assert np.abs(np.array(sweep_nhwc["psnr"]) - np.array(sweep32["psnr"])).max() <= REORDER_TOL_DB


def test_default_sweep_is_the_plain_fp32_network_bit_for_bit(env, runs):
    """The default run's PSNRs equal, bit for bit, the bare generator (load_generator, eager,
    float32, NCHW) on the same images and hints, with no model class or speed switch involved."""
    record, model = runs.sweep()
    assert not (model.amp or model.channels_last) and type(model.netG).__name__ == "SIGGRAPHGenerator"
    net = load_generator(str(env / "ckpt" / "m" / "latest_net_G.pth"))
    dataset = ImageFolderDataset(str(env / "data" / "val"), eval_transform(32), require_classes=False)
    generator = torch.Generator().manual_seed(0)
    expected = []
    with torch.no_grad():
        for index in eval_subset(len(dataset), 2, seed=0):
            rgb = dataset[index][0].unsqueeze(0).float().div_(255.0)
            batch = sweep_hints(rgb, SWEEP_NUM_POINTS, sample_Ps=[6], mask_cent=0.5, generator=generator)
            _, ab = net(batch.A, batch.hint_B, batch.mask_B)
            real = lab_norm2rgb(torch.cat((batch.A, batch.B), dim=1))
            fake = lab_norm2rgb(torch.cat((batch.A, ab), dim=1))
            expected.append(psnr_uint8(to_uint8(real), to_uint8(fake)).tolist())
    assert record["psnr"] == expected


def stderr_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_compile_unsupported_warns_in_one_line_and_runs_eager(env, runs, monkeypatch, capsys):
    fp32, _ = runs.test_py()
    monkeypatch.setattr(util.perf, "compile_unsupported_reason", lambda device: NO_COMPILER)
    capsys.readouterr()
    results = env / "test_compile_unsupported"
    assert test_script.main(eval_args(env, results, "--compile")) == 0
    warnings = [line for line in stderr_lines(capsys) if "--compile" in line]
    assert warnings == [f"warning: --compile: {NO_COMPILER}; running in eager mode"]
    assert (results / "m" / "val_latest" / "metrics.json").read_text() == json.dumps(fp32, indent=1) + "\n"


class RaisingModule(torch.nn.Module):
    """What the patched torch.compile returns: a module whose first (every) call fails."""

    def forward(self, *args):
        raise RuntimeError("backend exploded\nwith a long second line")


def test_call_guarded_falls_back_to_eager_when_the_compiled_call_raises(env, monkeypatch, capsys):
    """Evaluation (model.test) and training (optimize_parameters): one warning line, then the eager
    result, equal to a model built without --compile; the training step is taken once."""
    ckpt = ["--checkpoints_dir", str(env / "ckpt"), "--name", "m", "--gpu_ids", "-1"]
    rgb = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = get_colorization_data(rgb, p=0.125, generator=torch.Generator().manual_seed(2))
    expected = "warning: --compile: compiling failed (RuntimeError: backend exploded); running in eager mode"
    device = torch.device("cpu")

    def build(options, flags):
        torch.manual_seed(0)
        opt = options.parse(ckpt + flags)
        return create_model(opt, device)

    eager = build(TestOptions(), [])
    eager.set_input(batch)
    eager.test()
    eager_train = build(TrainOptions(), [])
    eager_train.set_input(batch)
    assert eager_train.optimize_parameters()

    monkeypatch.setattr(util.perf, "compile_unsupported_reason", lambda device: None)
    monkeypatch.setattr(torch, "compile", lambda net, **kwargs: RaisingModule())
    capsys.readouterr()
    model = build(TestOptions(), ["--compile"])
    assert isinstance(model.netG, RaisingModule)
    model.set_input(batch)
    model.test()
    assert [line for line in stderr_lines(capsys) if "--compile" in line] == [expected]
    assert torch.equal(model.fake_B_reg, eager.fake_B_reg) and model.losses["G"] == eager.losses["G"]
    model.test()  # later calls go straight to eager, without another warning
    assert not [line for line in stderr_lines(capsys) if "--compile" in line]

    trained = build(TrainOptions(), ["--compile"])
    trained.set_input(batch)
    assert trained.optimize_parameters()
    assert [line for line in stderr_lines(capsys) if "--compile" in line] == [expected]
    assert trained.optimizer_G.state_dict()["state"][0]["step"] == 1  # one Adam step, not two
    for (name, p), q in zip(trained.netG.named_parameters(), eager_train.netG.parameters()):
        assert torch.equal(p, q), name


def compile_reason():
    """Why this machine cannot run torch.compile (None: it can)."""
    return util.perf.compile_unsupported_reason(torch.device("cpu"))


@pytest.mark.skipif(os.environ.get("COMPILE_TESTS") != "1",
                    reason="a cold torch.compile of the whole generator costs ~50 s on 2 cores (measured), over "
                           "the suite's budget; COMPILE_TESTS=1 runs it. test_probe_compile_matches_eager compiles "
                           "the probes' trunk on every run")
def test_eval_compile_matches_eager(runs, capsys):
    """A real torch.compile of the generator's forward: test_sweep.py --compile against eager."""
    if compile_reason():
        pytest.skip(compile_reason())
    fp32, _ = runs.sweep()
    capsys.readouterr()
    compiled, model = runs.sweep("--compile")
    assert hasattr(model.netG, "_orig_mod")  # still the compiled module: the first call did not fall back
    assert not [line for line in stderr_lines(capsys) if "--compile" in line]
    assert np.abs(np.array(compiled["psnr"]) - np.array(fp32["psnr"])).max() <= REORDER_TOL_DB


# ----------------------------------------------------------------------------------------------
# Linear probes
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probe_env(tmp_path_factory, random_generator):
    """16 training and 8 validation layout images (all colourful, so every backbone batch of 8 has
    the same shape) and a random-init checkpoint 'rand'."""
    root = tmp_path_factory.mktemp("probe_flags")
    make_layout_dataset(root / "data", per_class_train=4, per_class_val=2)
    copy_checkpoint(random_generator, root / "ckpt", "rand")
    return root


@pytest.fixture(scope="module")
def default_cache(probe_env):
    """The default (float32, eager) run's cache folder, 'cache'."""
    run_probe(probe_env, "default", "--cache_dir", str(probe_env / "cache"))
    return probe_env / "cache"


def run_probe(probe_env, out, *flags):
    args = probe_args(probe_env / "data", probe_env / "ckpt", probe_env / out, "--niter", "1", "--batch_size", "8",
                      "--cache_dtype", "float32", *flags)
    assert tlc.main(args) == 0
    return json.loads((probe_env / out / "results.json").read_text())


def cached_features(folder):
    """{file name: entry} of a feature cache folder."""
    return {name: torch.load(os.path.join(folder, name), weights_only=True) for name in sorted(os.listdir(folder))}


def relative_error(x, y):
    return float((x - y).norm() / y.norm())


def test_trunk_runner_precision_layout_and_float32_outputs(probe_env):
    net = load_generator(str(probe_env / "ckpt" / "rand" / "latest_net_G.pth"))
    rgb = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = probes.backbone_inputs(rgb, 0.5)[:3]
    cpu = torch.device("cpu")
    eager = probes.TrunkRunner(probes.FrozenTrunk(net, probes.LAYERS), cpu)
    reference = eager(*inputs)
    assert eager.precision == "float32"
    amp = probes.TrunkRunner(probes.FrozenTrunk(net, probes.LAYERS), cpu, amp=True)
    assert amp.precision == "autocast_bfloat16"
    for layer, x in amp(*inputs).items():
        assert x.dtype == torch.float32
        assert 1e-4 < relative_error(x, reference[layer]) < 3e-2, layer  # bf16 in effect, and close
    nhwc = probes.TrunkRunner(probes.FrozenTrunk(load_generator(str(probe_env / "ckpt" / "rand" / "latest_net_G.pth")),
                                                 probes.LAYERS), cpu, channels_last=True)
    assert nhwc.trunk.blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    for layer, x in nhwc(*inputs).items():
        assert x.dtype == torch.float32 and relative_error(x, reference[layer]) < 1e-5, layer
    pooled = probes.pool_corrected(nhwc(*inputs)["conv3"], "conv3")
    assert torch.allclose(pooled, probes.pool_corrected(reference["conv3"], "conv3"), rtol=1e-4, atol=1e-6)


def test_probe_amp_is_in_the_cache_key_channels_last_reuses_the_cache(probe_env, default_cache):
    cache = ["--cache_dir", str(default_cache)]
    first = cached_features(default_cache)
    assert len(first) == 2 and all(json.loads(e["key"])["compute"] == "float32" for e in first.values())
    nhwc = run_probe(probe_env, "nhwc", "--channels_last", *cache)
    assert nhwc["data"]["features_from_cache"] == {"train": True, "val": True}
    amp = run_probe(probe_env, "amp", "--amp", *cache)
    assert amp["data"]["features_from_cache"] == {"train": False, "val": False}
    entries = cached_features(default_cache)
    added = {name: e for name, e in entries.items() if name not in first}
    assert len(added) == 2 and all(json.loads(e["key"])["compute"] == "autocast_bfloat16" for e in added.values())
    for name, entry in added.items():
        split = name.split("_")[0]
        (twin,) = [e for n, e in first.items() if n.startswith(split)]
        assert torch.equal(entry["labels"], twin["labels"])
        for layer, x in entry["features"].items():
            assert x.dtype == torch.float32 and 0 < relative_error(x, twin["features"][layer]) < 3e-2, layer


def test_probe_compile_fallbacks(probe_env, monkeypatch, capsys):
    """--compile where unsupported: one line, then the eager run (results equal the default's);
    a compiled trunk whose first call raises: one line, then the eager outputs."""
    default = run_probe(probe_env, "default_nocache", "--no_cache")
    monkeypatch.setattr(util.perf, "compile_unsupported_reason", lambda device: NO_COMPILER)
    capsys.readouterr()
    unsupported = run_probe(probe_env, "unsupported", "--no_cache", "--compile")
    assert [line for line in stderr_lines(capsys) if "--compile" in line] == [
        f"warning: --compile: {NO_COMPILER}; running in eager mode"]
    assert unsupported["layers"] == default["layers"]

    monkeypatch.setattr(util.perf, "compile_unsupported_reason", lambda device: None)
    monkeypatch.setattr(torch, "compile", lambda net, **kwargs: RaisingModule())
    net = load_generator(str(probe_env / "ckpt" / "rand" / "latest_net_G.pth"))
    runner = probes.TrunkRunner(probes.FrozenTrunk(net, ["conv1", "conv2"]), torch.device("cpu"), compile=True)
    inputs = probes.backbone_inputs(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8), 0.5)[:3]
    outputs = runner(*inputs)
    assert [line for line in stderr_lines(capsys) if "--compile" in line] == [
        "warning: --compile: compiling failed (RuntimeError: backend exploded); running in eager mode"]
    reference = probes.FrozenTrunk(net, ["conv1", "conv2"])(*inputs)
    assert list(outputs) == ["conv1", "conv2"] and all(torch.equal(outputs[k], reference[k]) for k in outputs)
    runner(*inputs)
    assert not stderr_lines(capsys)


def test_probe_compile_matches_eager(probe_env, default_cache, capsys):
    """A real torch.compile of the trunk (--compile, about 20 s cold on 2 cores): no warning, a graph
    compiled, and the features of the default run up to rounding, under the same cache key."""
    if compile_reason():
        pytest.skip(compile_reason())
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    capsys.readouterr()
    run_probe(probe_env, "compiled", "--compile", "--cache_dir", str(probe_env / "cache_compiled"))
    assert not [line for line in stderr_lines(capsys) if "--compile" in line]
    assert counters["stats"]["unique_graphs"] > graphs
    eager, compiled = cached_features(default_cache), cached_features(probe_env / "cache_compiled")
    (names,) = {tuple(n for n in eager if json.loads(eager[n]["key"])["compute"] == "float32")}
    assert tuple(compiled) == names  # the same keys: --compile is not part of them
    for name in names:
        for layer, x in compiled[name]["features"].items():
            assert relative_error(x, eager[name]["features"][layer]) < 1e-5, (name, layer)
