"""Each metric of util/metrics.py against an independent computation (hand arithmetic, skimage, loops)."""
import math

import numpy as np
import pytest
import torch
from skimage.color import deltaE_ciede2000, rgb2hsv, rgb2lab
from skimage.metrics import structural_similarity

from util import metrics
from util.color import rgb2lab as torch_rgb2lab
from util.image import to_uint8


def random_images(n=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# -- PSNR (the original's util.calculate_psnr_np) -----------------------------------------------------------
def test_to_uint8_truncates_as_the_original():
    values = torch.tensor([0.999, 1.2, -0.1, 0.5]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(values)[0, 0, :, 0].tolist() == [254, 255, 0, 127]


def test_psnr_one_channel_off_by_ten():
    real = np.full((1, 2, 2, 3), 100, dtype=np.uint8)
    fake = real.copy()
    fake[0, 1, 0, 2] = 110
    expected = 20 * math.log10(255 / math.sqrt(100 / 12))  # MSE over the 12 values
    assert metrics.psnr_uint8(real, fake)[0] == pytest.approx(38.9226, abs=1e-4)
    assert metrics.psnr_uint8(real, fake)[0] == pytest.approx(expected, rel=1e-12)


def test_psnr_identical_is_inf_and_per_image():
    images = random_images(3)
    fake = images.copy()
    fake[1] ^= 1  # every value of image 1 off by one: MSE 1
    psnr = metrics.psnr_uint8(images, fake)
    assert math.isinf(psnr[0]) and math.isinf(psnr[2])
    assert psnr[1] == pytest.approx(20 * math.log10(255), rel=1e-12)


# -- SSIM ---------------------------------------------------------------------------------------
def test_ssim_identical_is_one():
    images = random_images(2)
    assert np.array_equal(metrics.ssim_uint8(images, images), [1.0, 1.0])


def test_ssim_matches_skimage_called_directly():
    real, fake = random_images(2, seed=1), random_images(2, seed=2)
    fake[0] = real[0] // 2 + fake[0] // 2  # a correlated pair, SSIM well away from 0
    got = metrics.ssim_uint8(real, fake)
    for i in range(2):
        want = structural_similarity(real[i], fake[i], win_size=7, data_range=255, channel_axis=2)
        assert got[i] == want
    assert 0.3 < got[0] < 0.99 and got[1] < got[0]


# -- colourfulness (Hasler & Suesstrunk 2003) ---------------------------------------------------
def test_colorfulness_hand_computed():
    # Two pixels, pure red and pure blue: rg = (255, 0), yb = (127.5, -255).
    image = np.array([[[[255, 0, 0], [0, 0, 255]]]], dtype=np.uint8)
    mean_rg, std_rg = (255 + 0) / 2, 255 / 2
    mean_yb = (127.5 - 255) / 2
    std_yb = abs(127.5 - (-255)) / 2
    expected = math.sqrt(std_rg ** 2 + std_yb ** 2) + 0.3 * math.sqrt(mean_rg ** 2 + mean_yb ** 2)
    assert metrics.colorfulness_uint8(image)[0] == pytest.approx(expected, rel=1e-12)  # 270.95...


def test_colorfulness_signed_and_zero_for_gray():
    gray = np.full((1, 4, 4, 3), 77, dtype=np.uint8)
    assert metrics.colorfulness_uint8(gray)[0] == 0.0
    # Signed opponent channels: a uniform green image has mean rg = -255, std 0 -> 0.3 * |(-255, 127.5)|.
    green = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    green[..., 1] = 255
    assert metrics.colorfulness_uint8(green)[0] == pytest.approx(0.3 * math.hypot(255, 127.5), rel=1e-12)


def test_colorfulness_matches_a_pixel_loop():
    image = random_images(1, size=5)[0]
    rg = [float(r) - float(g) for r, g, _ in image.reshape(-1, 3)]
    yb = [0.5 * (float(r) + float(g)) - float(b) for r, g, b in image.reshape(-1, 3)]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    std = lambda v: math.sqrt(sum((x - mean(v)) ** 2 for x in v) / len(v))  # noqa: E731
    expected = math.sqrt(std(rg) ** 2 + std(yb) ** 2) + 0.3 * math.sqrt(mean(rg) ** 2 + mean(yb) ** 2)
    assert metrics.colorfulness_uint8(image[None])[0] == pytest.approx(expected, rel=1e-10)


# -- saturation ---------------------------------------------------------------------------------
def test_saturation_matches_skimage_hsv():
    images = random_images(2)
    images[1, :4] = 0  # some black pixels (saturation 0 by convention)
    got = metrics.mean_hsv_saturation_uint8(images)
    want = [rgb2hsv(image)[..., 1].mean() for image in images]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255
    np.testing.assert_allclose(metrics.mean_hsv_saturation(tensor).numpy(), want, rtol=0, atol=1e-12)


# -- Lab, AuC and CIEDE2000 ----------------------------------------------------------------------
def test_uint8_to_lab_matches_the_project_conversion():
    images = random_images(2)
    ours = torch_rgb2lab(torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255).permute(0, 2, 3, 1)
    np.testing.assert_allclose(metrics.uint8_to_lab(images), ours.numpy(), rtol=0, atol=1e-9)


def test_auc_perfect_prediction_is_one():
    ab = np.random.default_rng(0).normal(0, 40, (2, 8, 8, 2))
    assert np.array_equal(metrics.ab_error_auc(ab, ab), [1.0, 1.0])


def test_auc_constant_error():
    ab = np.random.default_rng(0).integers(-100, 100, (3, 8, 8, 2)).astype(np.float64)  # exact differences
    shift = np.zeros_like(ab)
    shift[0, ..., 0] = 30.0  # error 30 everywhere: thresholds 30..150 count, 121 of 151
    shift[1, ..., 0], shift[1, ..., 1] = 18.0, 24.0  # also exactly 30
    shift[2, ..., 1] = 200.0  # beyond the last threshold
    np.testing.assert_array_equal(metrics.ab_error_auc(ab + shift, ab), [121 / 151, 121 / 151, 0.0])


def test_auc_matches_a_threshold_loop():
    rng = np.random.default_rng(3)
    truth = rng.normal(0, 40, (2, 9, 7, 2))
    pred = truth + rng.normal(0, 50, truth.shape)
    error = np.sqrt(((pred - truth) ** 2).sum(-1))
    want = [np.mean([np.mean(error[i] <= t) for t in range(151)]) for i in range(2)]
    np.testing.assert_allclose(metrics.ab_error_auc(pred, truth), want, rtol=0, atol=1e-12)


def test_ciede2000_identical_is_zero_and_matches_skimage():
    real, fake = random_images(2, seed=4), random_images(2, seed=5)
    lab_real, lab_fake = metrics.uint8_to_lab(real), metrics.uint8_to_lab(fake)
    assert np.array_equal(metrics.mean_ciede2000(lab_real, lab_real), [0.0, 0.0])
    got = metrics.mean_ciede2000(lab_real, lab_fake)
    for i in range(2):
        want = deltaE_ciede2000(rgb2lab(real[i]), rgb2lab(fake[i])).mean()
        assert got[i] == pytest.approx(want, rel=1e-12)
    assert (got > 5).all()


# -- entropy and summaries ----------------------------------------------------------------------
def test_prediction_entropy():
    uniform = torch.full((1, 529, 2, 3), 1 / 529, dtype=torch.float64)
    onehot = torch.zeros(1, 529, 2, 3, dtype=torch.float64)
    onehot[:, 264] = 1
    half = torch.zeros(1, 529, 2, 3, dtype=torch.float64)
    half[:, 0, 0], half[:, 1, 0], half[:, 7, 1] = 0.5, 0.5, 1.0  # ln 2 on row 0, 0 on row 1
    got = metrics.prediction_entropy(torch.cat((uniform, onehot, half)))
    np.testing.assert_allclose(got.numpy(), [math.log(529), 0.0, math.log(2) / 2], atol=1e-8)


def test_mean_and_se():
    mean, se = metrics.mean_and_se([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert se == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2) / math.sqrt(3))
    assert metrics.mean_and_se([5.0]) == (5.0, 0.0)
    mean, se = metrics.mean_and_se([float("inf"), 3.0])
    assert math.isinf(mean) and math.isnan(se)


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="uint8"):
        metrics.colorfulness_uint8(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="ab arrays"):
        metrics.ab_error_auc(np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2, 3)))
