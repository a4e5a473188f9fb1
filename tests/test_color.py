"""util/color.py: colour conversion against skimage, normalisation, gradients and ab quantisation."""
import numpy as np
import pytest
import torch

skimage_color = pytest.importorskip("skimage.color")
skimage_data = pytest.importorskip("skimage.data")

from util.color import (decode_ind_ab, decode_max_ab, decode_mean, encode_ab_ind, hsv_saturation, lab2rgb,  # noqa: E402
                        lab2xyz, lab_norm2rgb, num_ab_bins, rgb2lab, rgb2lab_norm, rgb2xyz, xyz2lab, xyz2rgb)

CPU = torch.device("cpu")
CENTRES = np.arange(-110.0, 111.0, 10.0)  # the 23 bin centres per axis, Lab units


def nchw(x_hwc):
    """N x H x W x 3 (or H x W x 3) numpy -> N x 3 x H x W."""
    x = np.asarray(x_hwc)
    if x.ndim == 3:
        x = x[None]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nhwc(x_nchw):
    return np.ascontiguousarray(np.asarray(x_nchw).transpose(0, 2, 3, 1))


def random_rgb(n=3, h=16, w=16, seed=0):
    return np.random.default_rng(seed).random((n, 3, h, w))


@pytest.fixture(scope="module")
def photos():
    """Three real photos from skimage.data, downsampled 8x (64x64, 50x75, 38x57), RGB in [0, 1], float64."""
    return [nchw(getattr(skimage_data, name)()[::8, ::8].astype(np.float64) / 255.0)
            for name in ("astronaut", "coffee", "chelsea")]


# ----------------------------------------------------------------------------------------------
# rgb <-> lab against skimage
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rgb2lab_matches_skimage_random(dtype):
    rgb = torch.from_numpy(random_rgb()).to(dtype=dtype, device=CPU)
    ref = nchw(skimage_color.rgb2lab(nhwc(rgb.double().numpy())))  # float64 reference on the same values
    lab = rgb2lab(rgb)
    assert lab.dtype == dtype and lab.device == CPU and lab.shape == rgb.shape
    err = np.abs(lab.double().numpy() - ref).max()
    # float64 agrees to ~1e-13; float32 to ~5e-5 (rounding in a = 500 (f(X) - f(Y)))
    assert err < (1e-10 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rgb2lab_and_lab2rgb_match_skimage_on_photos(photos, dtype):
    for rgb in photos:
        ref_lab = nchw(skimage_color.rgb2lab(nhwc(rgb)))
        lab = rgb2lab(torch.from_numpy(rgb).to(dtype))
        assert np.abs(lab.double().numpy() - ref_lab).max() < (1e-10 if dtype == torch.float64 else 1e-4)
        # lab2rgb on in-gamut Lab (that of a real photo)
        ref_rgb = nchw(skimage_color.lab2rgb(nhwc(ref_lab)))
        back = lab2rgb(torch.from_numpy(ref_lab).to(dtype))
        assert back.dtype == dtype
        assert np.abs(back.double().numpy() - ref_rgb).max() < 1e-4
        if dtype == torch.float64:
            assert np.abs(back.numpy() - ref_rgb).max() < 1e-6


def test_uint8_fast_path_matches_skimage_and_the_float_path():
    """rgb2lab_norm of uint8 images (what train.py passes): all 256 levels of each channel against
    a coarse grid of the other two (256 x 16 x 16 colours, each channel in turn), and real photos."""
    levels, coarse = torch.arange(256, dtype=torch.uint8), torch.arange(0, 256, 17, dtype=torch.uint8)
    combos = torch.cartesian_prod(levels, coarse, coarse)  # 65536 x 3
    grid = torch.cat([combos.roll(k, dims=1) for k in range(3)]).T.reshape(1, 3, 768, 256)
    photos8 = [torch.from_numpy(nchw(getattr(skimage_data, name)()[::4, ::4].copy())) for name in ("astronaut", "coffee")]
    for rgb8 in [grid.reshape(1, 3, 256, -1)] + photos8:
        fast = rgb2lab_norm(rgb8, 0.0, 1.0, 1.0)  # plain Lab units
        assert fast.dtype == torch.float32 and fast.shape == rgb8.shape
        ref = nchw(skimage_color.rgb2lab(nhwc(rgb8.numpy())))  # skimage takes uint8 as /255
        assert np.abs(fast.double().numpy() - ref).max() < 1e-4
        slow = rgb2lab_norm(rgb8.float() / 255)  # the default normalisation, float path
        assert (rgb2lab_norm(rgb8) - slow).abs().max() < 2e-6


def test_round_trip(photos):
    for rgb in photos:
        t = torch.from_numpy(rgb)
        assert (lab2rgb(rgb2lab(t)) - t).abs().max() < 1e-8  # measured ~5e-9
        t32 = t.float()
        assert (lab2rgb(rgb2lab(t32)) - t32).abs().max() < 1e-4  # measured ~4e-7
    # On uniformly random colours (saturated, dark channels on the linear sRGB branch) the
    # float64 round trip is limited to ~1e-7 by the original's 8-digit XYZ->RGB matrix, which is
    # not the exact inverse of the RGB->XYZ matrix (the original keeps these digits).
    t = torch.from_numpy(random_rgb(seed=1))
    assert (lab2rgb(rgb2lab(t)) - t).abs().max() < 2e-7
    assert (lab2rgb(rgb2lab(t.float())) - t.float()).abs().max() < 1e-4


def test_lab2rgb_is_clamped_below_not_above():
    lab = torch.tensor([[100.0, 0.0, 0.0], [50.0, 100.0, -100.0], [30.0, -110.0, 110.0]],
                       dtype=torch.float64).T.reshape(1, 3, 1, 3)
    rgb = lab2rgb(lab)
    assert (rgb >= 0).all()
    assert rgb.max() > 1.0  # out-of-gamut colours exceed 1 (callers clip)
    assert torch.allclose(rgb[0, :, 0, 0], torch.ones(3, dtype=torch.float64), atol=2e-4)  # white


def test_normalisation():
    rgb = torch.from_numpy(random_rgb(seed=2))
    lab = rgb2lab(rgb)
    norm = rgb2lab_norm(rgb)
    assert torch.allclose(norm[:, :1], (lab[:, :1] - 50) / 100, atol=1e-12)
    assert torch.allclose(norm[:, 1:], lab[:, 1:] / 110, atol=1e-12)
    assert torch.allclose(lab_norm2rgb(norm), rgb, atol=2e-7)
    assert torch.allclose(lab_norm2rgb(norm), lab2rgb(lab), atol=1e-12)
    # the normalisation constants are parameters
    custom = rgb2lab_norm(rgb, l_cent=0.0, l_norm=1.0, ab_norm=1.0)
    assert torch.allclose(custom, lab, atol=1e-12)
    assert torch.allclose(lab_norm2rgb(custom, l_cent=0.0, l_norm=1.0, ab_norm=1.0), lab2rgb(lab), atol=1e-12)
    # black and white in normalised units
    bw = torch.tensor([0.0, 1.0], dtype=torch.float64).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    nbw = rgb2lab_norm(bw)
    assert torch.allclose(nbw[0, :, 0, 0], torch.tensor([-0.5, 0.0, 0.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(nbw[0, :, 0, 1], torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64), atol=1e-4)


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------
def _grad(fn, x):
    x = x.clone().requires_grad_(True)
    out = fn(x)
    g = torch.Generator().manual_seed(0)
    (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum().backward()
    return out, x.grad


def _pixels(rows, dtype=torch.float64):
    """A list of 3-vectors -> 1 x 3 x 1 x len(rows)."""
    return torch.tensor(rows, dtype=dtype).T.reshape(1, 3, 1, len(rows)).contiguous()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_finite_at_special_points(dtype):
    white = (0.95047, 1.0, 1.08883)
    # rgb: black, white, the sRGB threshold 0.04045 exactly, mixed 0/1, tiny values
    rgb = _pixels([[0, 0, 0], [1, 1, 1], [0.04045] * 3, [0, 1, 0.04045], [1e-12, 0.5, 1], [0.5, 0.5, 0.5]], dtype)
    for fn in (rgb2lab, rgb2xyz, lambda x: lab2rgb(rgb2lab(x)), lambda x: hsv_saturation(lab2rgb(rgb2lab(x)))):
        out, grad = _grad(fn, rgb)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    # xyz2lab at t = 0 and exactly at the cube-root threshold 0.008856
    xyz = _pixels([[0, 0, 0], [w * 0.008856 for w in white], list(white)], dtype)
    out, grad = _grad(xyz2lab, xyz)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    # lab2rgb: black (L=0), white, f exactly at 0.2068966, f_z clamped at 0, out of gamut (negative linear RGB)
    L_thr = 0.2068966 * 116 - 16
    lab = _pixels([[0, 0, 0], [100, 0, 0], [L_thr, 0, 0], [50, 0, 200], [20, -110, 110], [60, 110, -110]], dtype)
    for fn in (lab2rgb, lab2xyz, lambda x: hsv_saturation(lab2rgb(x))):
        out, grad = _grad(fn, lab)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    # xyz2rgb at linear RGB exactly 0 and exactly at 0.0031308
    xyz = _pixels([[0, 0, 0], [0.95047 * 0.0031308, 0.0031308, 1.08883 * 0.0031308]], dtype)
    out, grad = _grad(xyz2rgb, xyz)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()


def test_gradcheck_away_from_kinks():
    g = torch.Generator().manual_seed(3)
    rgb = (0.2 + 0.7 * torch.rand(1, 3, 2, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(rgb2lab, (rgb,), eps=1e-6, atol=1e-5)
    lab = rgb2lab(rgb.detach()).requires_grad_(True)  # in gamut, all pieces on their smooth branch
    assert torch.autograd.gradcheck(lab2rgb, (lab,), eps=1e-6, atol=1e-5)
    norm = rgb2lab_norm(rgb.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(lab_norm2rgb, (norm,), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# quantisation (the original's util/util.py encode_ab_ind, decode_ind_ab)
# ----------------------------------------------------------------------------------------------
def _centre_grid():
    """All 529 bin centres as normalised ab, 1 x 2 x 1 x 529, in q = a * 23 + b order."""
    a, b = np.meshgrid(CENTRES, CENTRES, indexing="ij")
    ab = np.stack((a.ravel(), b.ravel()))[None, :, None, :] / 110.0
    return torch.from_numpy(ab).float()


def test_encode_decode_grid():
    assert num_ab_bins() == 23
    assert num_ab_bins(110.0, 10.0) ** 2 == 529
    q = encode_ab_ind(_centre_grid())
    assert q.dtype == torch.int64 and q.shape == (1, 1, 1, 529)
    assert torch.equal(q.flatten(), torch.arange(529))
    back = decode_ind_ab(torch.arange(529).view(1, 1, 1, 529))
    assert back.shape == (1, 2, 1, 529)
    # decode_ind_ab computes in float32, the centres here in float64 then cast: within 1 ulp;
    # a bin off by one would be 10 / 110 away.
    torch.testing.assert_close(back, _centre_grid(), rtol=0, atol=1e-7)
    # worked examples: (a, b) = (0, 0) -> 264; (-110, 110) -> 22; out-of-grid values clamp
    ab = torch.tensor([[0.0, 0.0], [-110.0, 110.0], [-500.0, 500.0], [4.9, -4.9], [5.1, 14.9]]).T.reshape(1, 2, 1, 5)
    assert encode_ab_ind(ab / 110).flatten().tolist() == [264, 22, 22, 264, 12 * 23 + 12]


def test_decode_max_ab_floor_division():
    # q = (0, 22, 23, 264) are bins (0,0), (0,22), (1,0), (11,11)
    logits = torch.zeros(1, 529, 1, 4)
    for i, q in enumerate((0, 22, 23, 264)):
        logits[0, q, 0, i] = 1.0
    ab = decode_max_ab(logits) * 110
    expected = torch.tensor([[-110.0, -110.0], [-110.0, 110.0], [-100.0, -110.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 4)
    assert ab.shape == (1, 2, 1, 4)
    assert torch.allclose(ab, expected, atol=1e-4)
    # the argmax, not the first channel: shifting all logits changes nothing
    assert torch.equal(decode_max_ab(logits + 3.0), decode_max_ab(logits))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decode_mean(dtype):
    onehot = torch.eye(529, dtype=dtype).T.reshape(1, 529, 1, 529)  # pixel j is onehot(j)
    mean = decode_mean(onehot)
    assert mean.dtype == dtype and mean.shape == (1, 2, 1, 529)
    assert torch.allclose(mean, _centre_grid().to(dtype), atol=1e-6)
    assert torch.allclose(mean[0, :, 0, 264] * 110, torch.zeros(2, dtype=dtype), atol=1e-5)
    assert torch.allclose(mean[0, :, 0, 24] * 110, torch.tensor([-100.0, -100.0], dtype=dtype), atol=1e-4)
    uniform = torch.full((2, 529, 3, 2), 1.0 / 529, dtype=dtype)
    assert torch.allclose(decode_mean(uniform), torch.zeros(2, 2, 3, 2, dtype=dtype), atol=1e-6)
    # a two-bin mixture: the expectation of each marginal
    mix = torch.zeros(1, 529, 1, 1, dtype=dtype)
    mix[0, 0] = 0.25  # (a, b) = (-110, -110)
    mix[0, 23 * 12 + 13] = 0.75  # (a, b) = (10, 20)
    expected = torch.tensor([0.25 * -110 + 0.75 * 10, 0.25 * -110 + 0.75 * 20], dtype=dtype) / 110
    assert torch.allclose(decode_mean(mix).flatten(), expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# HSV saturation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hsv_saturation_matches_skimage(dtype):
    rgb = random_rgb(n=2, h=12, w=10, seed=4)
    ref = skimage_color.rgb2hsv(nhwc(rgb))[..., 1]
    s = hsv_saturation(torch.from_numpy(rgb).to(dtype))
    assert s.shape == (2, 1, 12, 10) and s.dtype == dtype
    assert np.abs(s[:, 0].double().numpy() - ref).max() < 1e-6
    # black, gray, pure red, out-of-range values are clipped to [0, 1] first
    special = _pixels([[0, 0, 0], [0.3, 0.3, 0.3], [1, 0, 0], [1.5, 0.5, -0.2]], dtype)
    assert torch.allclose(hsv_saturation(special).flatten(), torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=dtype))
