"""models/pix2pix_model.py and models/base_model.py: visuals, loss names and smoothing, and the
saturation term S_reg (its gradient, its value, its place in the loss and its effect on training)."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.base_model import LossSmoother
from models.pix2pix_model import SAT_REF_PIXELS, Pix2PixModel, saturation_penalty
from options.train_options import TrainOptions
from util.color import hsv_saturation, lab2rgb, lab_norm2rgb
from util.hints import get_colorization_data

skimage_color = pytest.importorskip("skimage.color")

VISUALS = ["gray", "real", "fake_max", "fake_mean", "fake_reg", "hint", "real_ab", "fake_ab_max", "fake_ab_mean",
           "fake_ab_reg", "mask", "hint_ab", "fake_entr"]
# The original's logged names (compute_losses_G) without its duplicate G_entr.
ORIGINAL_NAMES = ["G_CE", "G_entr", "G_entr_hint", "G_L1_max", "G_L1_mean", "G_L1_reg", "G_fake_real",
                  "G_fake_hint", "G_real_hint", "0"]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def make_model(*extra, seed=0):
    torch.manual_seed(seed)  # same initial weights for the same seed
    opt = TrainOptions().parse(["--gpu_ids", "-1", *extra])
    return Pix2PixModel(opt, torch.device("cpu"))


def smooth_rgb(n=4, size=32, seed=3):
    """Smooth, colourful images: bilinear upsampling of random 4 x 4 colour grids."""
    base = torch.rand(n, 3, 4, 4, generator=gen(seed))
    return F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def fixed_batch(n=4, size=32, seed=3):
    return get_colorization_data(smooth_rgb(n, size, seed), ab_thresh=0, p=1 / 8, generator=gen(seed + 1))


# ----------------------------------------------------------------------------------------------
# visuals
# ----------------------------------------------------------------------------------------------
def test_visuals():
    model = make_model()
    rgb = smooth_rgb(2, 32, seed=5)
    model.set_input(get_colorization_data(rgb, ab_thresh=0, num_points=4, generator=gen(6)))
    with torch.no_grad():
        model.forward()
    vis = model.get_current_visuals()
    assert list(vis.keys()) == VISUALS
    assert list(model.visual_names) == VISUALS
    for name, v in vis.items():
        assert v.shape == (2, 3, 32, 32), name
        assert torch.isfinite(v).all(), name
    gray = vis["gray"]
    assert (gray.amax(dim=1) - gray.amin(dim=1)).max() < 1e-3  # a = b = 0: R = G = B
    assert torch.allclose(vis["real"], rgb, atol=1e-5)  # the Lab round trip of the input
    mask = vis["mask"]
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask, model.mask_B_nc.expand(-1, 3, -1, -1))
    assert (vis["hint_ab"][mask == 0] == 0).all()
    assert (vis["hint_ab"][mask == 1] > 0).any()
    # the ab-only visuals are rendered at L = 50
    L50 = torch.zeros_like(model.real_A)
    assert torch.allclose(vis["real_ab"], lab_norm2rgb(torch.cat((L50, model.real_B), dim=1)), atol=1e-6)
    assert vis["fake_entr"].min() >= -1 and vis["fake_entr"].max() <= 1


# ----------------------------------------------------------------------------------------------
# loss names and smoothing (the original's BaseModel.get_current_losses)
# ----------------------------------------------------------------------------------------------
def test_loss_names():
    names = Pix2PixModel.loss_names
    assert names.count("G_entr") == 1
    assert len(set(names)) == len(names)
    assert names[:10] == ORIGINAL_NAMES
    assert "S_reg" in names and "G" in names


def test_loss_smoother_constant():
    sm = LossSmoother(0.986)
    for _ in range(6):
        out = sm.update({"G_CE": 1.0, "G_entr": 1.0})
        assert out["G_CE"] == pytest.approx(1.0, abs=1e-12)
        assert out["G_entr"] == pytest.approx(1.0, abs=1e-12)  # the original: 1.986, 1.972, ...


def test_loss_smoother_formula():
    a = 0.986
    sm = LossSmoother(a)
    assert sm.update({"x": 1.0})["x"] == pytest.approx(1.0, abs=1e-12)
    # S = 2 + a * 1; reported (1 - a) / (1 - a^2) * S = (2 + a) / (1 + a)
    assert sm.update({"x": 2.0})["x"] == pytest.approx((2 + a) / (1 + a), abs=1e-12)
    assert sm.update({"x": 4.0})["x"] == pytest.approx((1 - a) / (1 - a ** 3) * (4 + a * 2 + a * a), abs=1e-12)


def test_model_smoothed_losses_count_each_name_once():
    model = make_model()
    model.losses = {name: torch.tensor(1.0) for name in model.loss_names}
    for _ in range(4):
        out = model.get_current_losses()
        assert list(out) == model.loss_names
        assert all(v == pytest.approx(1.0, abs=1e-12) for v in out.values()), out


# ----------------------------------------------------------------------------------------------
# the saturation term
# ----------------------------------------------------------------------------------------------
def _lab_batch(n, h, w, seed, l_range, ab_range, dtype=torch.float32):
    g = gen(seed)
    L = l_range[0] + (l_range[1] - l_range[0]) * torch.rand(n, 1, h, w, generator=g, dtype=dtype)
    ab = (2 * torch.rand(n, 2, h, w, generator=g, dtype=dtype) - 1) * ab_range
    return (L - 50) / 100, ab / 110  # normalised


def _mean_saturation(L_norm, ab_norm):
    return hsv_saturation(lab_norm2rgb(torch.cat((L_norm, ab_norm), dim=1))).mean().item()


def test_saturation_gradient_increases_saturation():
    L_norm, ab = _lab_batch(2, 16, 16, seed=7, l_range=(50, 70), ab_range=40.0)
    ab = ab.requires_grad_(True)
    s_reg = saturation_penalty(L_norm, ab)
    (grad,) = torch.autograd.grad(s_reg, ab)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    eps = 1e-4  # |grad| ~ 30976 / 512 per element: a step of ~0.01 in normalised ab (~1 Lab unit)
    with torch.no_grad():
        stepped = ab - eps * grad
        backwards = ab + eps * grad
        s0, s1, s2 = (_mean_saturation(L_norm, x) for x in (ab, stepped, backwards))
        assert s1 > s0 + 1e-3 and s2 < s0 - 1e-3
        assert saturation_penalty(L_norm, stepped) < s_reg.detach() - 1
        assert saturation_penalty(L_norm, backwards) > s_reg.detach() + 1


def test_saturation_penalty_is_the_desaturation_of_a_176_px_crop_at_any_size():
    """For one 176 x 176 image S_reg is the sum over its pixels of 1 - S (skimage's HSV
    saturation); a 44 x 44 patch counts as its 4 x 4 tiling to 176 x 176 (its pixels weigh 16 x)."""
    L_norm, ab = _lab_batch(1, 176, 176, seed=9, l_range=(30, 80), ab_range=60.0, dtype=torch.float64)
    lab = torch.cat((L_norm * 100 + 50, ab * 110), dim=1)[0].numpy().transpose(1, 2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about Z < 0 (out-of-gamut) pixels
        sat = skimage_color.rgb2hsv(skimage_color.lab2rgb(lab))[..., 1]
    assert float(saturation_penalty(L_norm, ab)) == pytest.approx(np.sum(1 - sat), rel=1e-4)
    patch = (L_norm[..., :44, :44], ab[..., :44, :44])
    tiled = [x.repeat(1, 1, 4, 4) for x in patch]
    assert float(saturation_penalty(*patch)) == pytest.approx(float(saturation_penalty(*tiled)), rel=1e-9)


def test_saturation_penalty_value_matches_skimage():
    # includes out-of-gamut colours, so the RGB clipping matters
    for dtype in (torch.float32, torch.float64):
        L_norm, ab = _lab_batch(3, 12, 10, seed=8, l_range=(20, 90), ab_range=80.0, dtype=dtype)
        lab = torch.cat((L_norm * 100 + 50, ab * 110), dim=1).double().numpy().transpose(0, 2, 3, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skimage warns about Z < 0 (out-of-gamut) pixels
            rgb = skimage_color.lab2rgb(lab)  # clipped to [0, 1]
        sat = skimage_color.rgb2hsv(rgb)[..., 1]
        expected = SAT_REF_PIXELS * np.mean(1 - sat)
        got = saturation_penalty(L_norm, ab)
        assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert float(got) == pytest.approx(expected, rel=1e-4)
        assert (lab2rgb(torch.from_numpy(lab.transpose(0, 3, 1, 2))) > 1).any()  # some colours were clipped
    # gray predictions are maximally penalised: S = 0 everywhere
    assert float(saturation_penalty(L_norm, torch.zeros_like(ab))) == pytest.approx(SAT_REF_PIXELS, rel=1e-3)


def test_total_loss_with_and_without_saturation_term():
    batch = fixed_batch(2, 32, seed=9)
    with_sat = make_model("--lambda_sat", "1e-4", "--lambda_A", "2", seed=1)
    without = make_model("--lambda_A", "2", seed=1)
    assert with_sat.lambda_sat == pytest.approx(1e-4) and without.lambda_sat == 0.0
    results = []
    for model in (with_sat, without):
        model.set_input(batch)
        model.forward()
        loss = model.compute_losses()
        (grad,) = torch.autograd.grad(loss, model.fake_B_reg)
        results.append((model, loss.detach(), grad))
    (m1, loss1, grad1), (m0, loss0, grad0) = results
    assert torch.equal(m1.fake_B_reg, m0.fake_B_reg)  # same weights, same batch
    l1 = {k: float(v) for k, v in m1.losses.items()}
    l0 = {k: float(v) for k, v in m0.losses.items()}
    s_reg = float(saturation_penalty(m1.real_A, m1.fake_B_reg.detach()))
    assert l1["S_reg"] == pytest.approx(s_reg, rel=1e-6) and l0["S_reg"] == pytest.approx(s_reg, rel=1e-6)
    assert 1e-4 * s_reg > 1.0  # near-gray initial predictions: S_reg ~ 2.8e4, a term comparable with G_L1_reg
    assert float(loss1) == pytest.approx(2 * l1["G_CE"] + l1["G_L1_reg"] + 1e-4 * l1["S_reg"], rel=1e-6)
    assert l1["G"] == pytest.approx(float(loss1), rel=1e-7)
    assert float(loss0) == pytest.approx(2 * l0["G_CE"] + l0["G_L1_reg"], rel=1e-6)
    assert l0["G"] == pytest.approx(float(loss0), rel=1e-7)
    # the gradient w.r.t. the regression output gains exactly lambda_sat * dS_reg/d(out_reg)
    ab = m1.fake_B_reg.detach().requires_grad_(True)
    (grad_s,) = torch.autograd.grad(saturation_penalty(m1.real_A, ab), ab)
    assert torch.allclose(grad1 - grad0, 1e-4 * grad_s, atol=1e-9, rtol=1e-4)
    assert (grad1 - grad0).abs().max() > 1e-6


def test_saturation_term_increases_saturation_in_training():
    """Controlled A/B: same initial weights, same fixed batch of 4 32x32 images, 8 Adam steps on
    the whole network (lr 1e-4, regression mode), lambda_sat 0 vs 1e-4; then the mean HSV
    saturation of the eval-mode regression prediction must be higher with the term.
    Measured: 0.043 (lambda_sat 0) vs 0.105 (1e-4). ~5 s on an idle 2-core CPU."""
    batch = fixed_batch(4, 32, seed=3)
    sats, l1 = {}, {}
    for lam in ("0", "1e-4"):
        model = make_model("--lambda_sat", lam, "--lr", "1e-4", seed=0)
        assert not model.opt.classification
        before = {k: v.clone() for k, v in model.netG.state_dict().items() if k.startswith(("model5.0", "model_out"))}
        model.set_input(batch)
        for _ in range(8):
            model.optimize_parameters()
        after = model.netG.state_dict()
        for k, v in before.items():
            assert not torch.equal(after[k], v), k  # the trunk and the output layer both trained
        model.eval()
        with torch.no_grad():
            model.forward()
            model.compute_losses()
        sats[lam] = hsv_saturation(model._to_rgb(model.real_A, model.fake_B_reg)).mean().item()
        l1[lam] = float(model.losses["G_L1_reg"])
    assert sats["1e-4"] > sats["0"] + 0.02, (sats, l1)
