"""Parity with the ORIGINAL colorization-pytorch code through tests/data/golden_siggraph.npz.

The archive holds the original's colour conversion, generator outputs and logged losses for a
fixed 2-image 32 x 48 batch with fixed hints, computed with deterministic weights that are rebuilt
here from the state_dict key names (tests/golden_oracle.py).
Agreement expected on CPU float32: outputs 1e-5 absolute (eval mode), losses 1e-5 relative.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.networks import define_G
from models.pix2pix_model import Pix2PixModel
from options.train_options import TrainOptions
from tests.golden_oracle import GOLDEN, LOSS_NAMES, rebuild_weight
from util.color import rgb2lab_norm
from util.hints import ColorizationBatch

COMBOS = [(cls, mode) for cls in ("cls", "reg") for mode in ("train", "eval")]


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def weights():
    keys_shapes = [(k, tuple(v.shape)) for k, v in define_G().state_dict().items()]
    assert len(keys_shapes) == 107
    return {k: rebuild_weight(k, s) for k, s in keys_shapes}


@pytest.fixture(scope="module")
def inputs(golden):
    lab = torch.from_numpy(golden["lab_norm"])
    return SimpleNamespace(lab=lab, hint_B=torch.from_numpy(golden["hint_B"]),
                           mask_B=torch.from_numpy(golden["mask_B_centred"]))


def build_model(cls, weights, extra=()):
    argv = ["--gpu_ids", "-1"] + (["--classification"] if cls == "cls" else []) + list(extra)
    opt = TrainOptions().parse(argv)
    model = Pix2PixModel(opt, torch.device("cpu"))
    model.netG.load_state_dict(weights)
    return model


@pytest.fixture(scope="module")
def runs(weights, inputs):
    """One fresh model per (cls|reg, train|eval): a train-mode forward updates the running stats,
    so every mode starts from the freshly loaded weights. Results are cached, models dropped."""
    cache = {}

    def get(cls, mode):
        if (cls, mode) not in cache:
            model = build_model(cls, weights)
            model.train() if mode == "train" else model.eval()
            model.set_input(ColorizationBatch(A=inputs.lab[:, :1], B=inputs.lab[:, 1:], hint_B=inputs.hint_B,
                                              mask_B=inputs.mask_B, keep=None))
            with torch.no_grad():
                model.forward()
                model.compute_losses()
            cache[(cls, mode)] = SimpleNamespace(
                out_class=model.fake_B_class.detach().clone(), out_reg=model.fake_B_reg.detach().clone(),
                losses={k: v.clone() for k, v in model.losses.items()}, values=model.get_current_loss_values(),
                lambda_A=model.lambda_A)
        return cache[(cls, mode)]

    return get


def test_golden_inputs_are_what_the_readme_says(golden):
    assert golden["rgb"].shape == (2, 3, 32, 48)
    assert set(np.unique(golden["mask_B_centred"])) == {-0.5, 0.5}
    painted = golden["mask_B_centred"] > 0
    assert np.all(golden["hint_B"][np.broadcast_to(~painted, golden["hint_B"].shape)] == 0)


def test_rgb2lab_norm_matches_original(golden):
    ours = rgb2lab_norm(torch.from_numpy(golden["rgb"])).numpy()
    assert np.abs(ours - golden["lab_norm"]).max() < 1e-5


@pytest.mark.parametrize("cls", ["cls", "reg"])
def test_eval_outputs_match_original(golden, runs, cls):
    r = runs(cls, "eval")
    assert np.abs(r.out_class.numpy() - golden[f"{cls}_eval_out_class"]).max() < 1e-5
    assert np.abs(r.out_reg.numpy() - golden[f"{cls}_eval_out_reg"]).max() < 1e-5


@pytest.mark.parametrize("cls", ["cls", "reg"])
def test_train_outputs_match_original(golden, runs, cls):
    # Train-mode BatchNorm normalises with the statistics of this batch. At the H/8 blocks
    # (model4..model7) a 2-image 32 x 48 batch has 2 x 4 x 6 = 48 values per channel, so the
    # per-channel variance is estimated from few values and small float rounding differences are
    # amplified through four blocks: the train-mode outputs are ill-conditioned. Our own float32
    # and float64 forwards differ by ~3e-4 (see test_train_mode_is_ill_conditioned), and the
    # golden differs from our float32 by up to ~9e-4 (median ~3e-5). So the bound here is 3e-3
    # on the maximum and 1e-4 on the median: conditioning, not a mismatch (eval mode agrees to 1e-5).
    r = runs(cls, "train")
    for ours, ref in ((r.out_class, golden[f"{cls}_train_out_class"]), (r.out_reg, golden[f"{cls}_train_out_reg"])):
        diff = np.abs(ours.numpy() - ref)
        assert diff.max() < 3e-3
        assert np.median(diff) < 1e-4


def test_train_mode_is_ill_conditioned(weights, inputs, golden, runs):
    """Why the train-mode bound is looser: float64 vs float32 of OUR OWN net already differ by
    more than the eval-mode tolerance, while in eval mode they agree well within it."""
    A, B, M = (x.double() for x in (inputs.lab[:, :1], inputs.hint_B, inputs.mask_B))
    net64 = define_G().double()
    net64.load_state_dict({k: (v.double() if v.is_floating_point() else v) for k, v in weights.items()})
    with torch.no_grad():
        e64 = net64.eval()(A, B, M)[0]
        t64 = net64.train()(A, B, M)[0]  # (after eval: a train-mode pass updates the running stats)
    e32 = runs("cls", "eval").out_class.double()
    t32 = runs("cls", "train").out_class.double()
    assert (e64 - e32).abs().max() < 1e-5
    assert (t64 - t32).abs().max() > 1e-5
    # and the original's float32 result lies about as far from the float64 value as ours does
    ref = torch.from_numpy(golden["cls_train_out_class"]).double()
    assert (t64 - ref).abs().max() < 3e-3


@pytest.mark.parametrize("cls,mode", COMBOS)
def test_losses_match_original(golden, runs, cls, mode):
    values = runs(cls, mode).values
    for name in LOSS_NAMES:
        ref = float(golden[f"{cls}_{mode}_loss_{name}"])
        assert values[name] == pytest.approx(ref, rel=1e-5), name


def independent_losses(out_class, out_reg, real_B, hint_B, mask, lambda_A=1.0):
    """The original's compute_losses_G computed from scratch in float64 numpy from the model's raw outputs."""
    logits = out_class.double().numpy()
    reg = out_reg.double().numpy()
    real = real_B.double().numpy()
    hint = hint_B.double().numpy()
    m = mask.double().numpy()
    n, c, h, w = logits.shape

    def up4(x):  # nearest x4 upsampling
        return x.repeat(4, axis=2).repeat(4, axis=3)

    def l1(x, y):  # sum over channels of |x - y|, per pixel
        return np.abs(x - y).sum(axis=1, keepdims=True)

    # cross-entropy against the bins of the top-left pixel of every 4 x 4 cell
    sub = real[:, :, ::4, ::4]
    bins = np.clip(np.round((sub * 110 + 110) / 10), 0, 22).astype(np.int64)  # numpy also rounds half to even
    target = bins[:, 0] * 23 + bins[:, 1]  # n x h x w
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    G_CE = -np.take_along_axis(log_softmax, target[:, None], axis=1).mean()

    probs = np.exp(log_softmax)
    entropy = -(probs * np.log(probs + 1e-10)).sum(axis=1, keepdims=True)
    mask_avg = m.mean() + 1e-6

    q = logits.argmax(axis=1)[:, None]
    dec_max = np.concatenate((q // 23, q % 23), axis=1) * 10.0 - 110.0  # floor division (the fixed decode)
    grid = probs.reshape(n, 23, 23, h, w)
    centres = (np.arange(23) * 10.0 - 110.0)[None, :, None, None]
    dec_mean = np.concatenate(((grid.sum(axis=2) * centres).sum(axis=1, keepdims=True),
                               (grid.sum(axis=1) * centres).sum(axis=1, keepdims=True)), axis=1)

    G_L1_reg = 10 * l1(reg, real).mean()
    return {
        "G_CE": G_CE,
        "G_entr": entropy.mean(),  # the mean is unchanged by nearest upsampling
        "G_entr_hint": (up4(entropy) * m).mean() / mask_avg,
        "G_L1_max": 10 * l1(up4(dec_max / 110), real).mean(),
        "G_L1_mean": 10 * l1(up4(dec_mean / 110), real).mean(),
        "G_L1_reg": G_L1_reg,
        "G_fake_real": 10 * l1(reg * m, real * m).mean() / mask_avg,
        "G_fake_hint": 10 * l1(reg * m, hint * m).mean() / mask_avg,
        "G_real_hint": 10 * l1(real * m, hint * m).mean() / mask_avg,
        "G": G_CE * lambda_A + G_L1_reg,
    }


@pytest.mark.parametrize("cls,mode", COMBOS)
def test_losses_equal_independent_computation(runs, inputs, cls, mode):
    r = runs(cls, mode)
    mask = inputs.mask_B + 0.5
    expected = independent_losses(r.out_class, r.out_reg, inputs.lab[:, 1:], inputs.hint_B, mask, r.lambda_A)
    for name in LOSS_NAMES:
        assert float(r.losses[name]) == pytest.approx(expected[name], rel=2e-6), name  # measured <= 2e-7
    # sanity of the fixture: the metrics are O(1) numbers, not degenerate zeros
    assert expected["G_entr"] > 1 and expected["G_real_hint"] > 0 and expected["G_L1_max"] > 0
