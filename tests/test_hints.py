"""util/hints.py: the random colour-hint sampler and the grayscale filter (the original's util/util.py).

Statistical tests use fixed generator seeds (so they are deterministic) and tolerances of 5
standard errors of the sampling distribution, computed in each test.
"""
import math

import numpy as np
import pytest
import torch

from util.color import rgb2lab_norm
from util.hints import ColorizationBatch, add_color_patches, colorful_mask, get_colorization_data, sample_hint_counts


def gen(seed):
    return torch.Generator().manual_seed(seed)


def random_ab(n, h, w, seed=0, dtype=torch.float32):
    return (torch.rand(n, 2, h, w, generator=gen(seed), dtype=dtype) - 0.5) * 1.2


def mask_bbox(mask):
    """N x 1 x H x W {0,1} mask with one rectangle per image -> (top, left, height, width) arrays."""
    m = mask[:, 0].bool()
    rows, cols = m.any(dim=2), m.any(dim=1)
    top = rows.float().argmax(dim=1)
    left = cols.float().argmax(dim=1)
    return top, left, rows.sum(dim=1), cols.sum(dim=1)


# ----------------------------------------------------------------------------------------------
# number of hints
# ----------------------------------------------------------------------------------------------
def test_exact_num_points():
    ab = torch.zeros(300, 2, 64, 64)
    _, mask = add_color_patches(ab, num_points=5, sample_Ps=[1], samp="uniform", generator=gen(1))
    counts = mask.sum(dim=(1, 2, 3))
    assert mask.dtype == ab.dtype and set(mask.unique().tolist()) == {0.0, 1.0}
    assert counts.min() >= 1 and counts.max() <= 5
    # collisions of 5 single pixels among 4096 are rare (~0.25% of images): nearly all have 5
    assert counts.mean() > 4.95
    # a single 3x3 patch never overlaps itself: exactly 9 pixels in every image
    _, mask = add_color_patches(ab[:50], num_points=1, sample_Ps=[3], samp="normal", generator=gen(2))
    assert torch.equal(mask.sum(dim=(1, 2, 3)), torch.full((50,), 9.0))
    top, left, h, w = mask_bbox(mask)
    assert torch.equal(h, torch.full((50,), 3)) and torch.equal(w, torch.full((50,), 3))


def test_num_points_per_image_tensor():
    ab = random_ab(4, 64, 64, seed=3)
    k = torch.tensor([0, 1, 2, 7], dtype=torch.int64)
    hint, mask = add_color_patches(ab, num_points=k, sample_Ps=[1], samp="uniform", generator=gen(4))
    counts = mask.sum(dim=(1, 2, 3))
    assert counts[0] == 0 and (hint[0] == 0).all()
    assert (counts[1:] >= 1).all() and (counts <= k.float()).all()
    assert torch.equal(counts, k.float())  # this seed has no collisions


@pytest.mark.parametrize("p", [1 / 8, 1 / 32])
def test_geometric_counts(p):
    n = 200_000
    k = sample_hint_counts(n, p, generator=gen(5))
    assert k.dtype == torch.int64 and k.shape == (n,) and k.min() >= 0
    mean, var = (1 - p) / p, (1 - p) / p ** 2
    assert abs(k.double().mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(k.double().var().item() - var) < 0.05 * var  # SE of the variance is ~0.6% (p=1/8) .. 0.7%
    assert abs((k == 0).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs((k == 1).double().mean().item() - p * (1 - p)) < 5 * math.sqrt(p * (1 - p) * (1 - p * (1 - p)) / n)


def test_geometric_edge_cases():
    assert torch.equal(sample_hint_counts(1000, 1.0, generator=gen(6)), torch.zeros(1000, dtype=torch.int64))
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            sample_hint_counts(10, bad)


def test_geometric_mode_in_add_color_patches():
    n, p = 2000, 1 / 8
    ab = torch.zeros(n, 2, 48, 48)
    _, mask = add_color_patches(ab, p=p, sample_Ps=[1], samp="uniform", generator=gen(7))
    counts = mask.sum(dim=(1, 2, 3)).double()
    # single-pixel hints in 2304 pixels: collisions are negligible (< 0.1 expected per image)
    assert abs(counts.mean().item() - (1 - p) / p) < 5 * math.sqrt((1 - p) / p ** 2 / n)
    assert abs((counts == 0).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    hint, mask = add_color_patches(random_ab(8, 16, 16), p=1.0, generator=gen(8))
    assert (mask == 0).all() and (hint == 0).all()


# ----------------------------------------------------------------------------------------------
# patch sizes and placement
# ----------------------------------------------------------------------------------------------
def test_patch_sizes_uniform():
    sizes = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    n = 6000
    _, mask = add_color_patches(torch.zeros(n, 2, 16, 16), num_points=1, sample_Ps=sizes, generator=gen(9))
    top, left, h, w = mask_bbox(mask)
    area = mask.sum(dim=(1, 2, 3)).long()
    assert torch.equal(h, w) and torch.equal(h * w, area)  # filled squares
    freq = torch.bincount(h, minlength=10)[1:].double() / n
    se = math.sqrt((1 / 9) * (8 / 9) / n)  # 0.0041
    assert (freq - 1 / 9).abs().max() < 5 * se, freq
    # a list with repeats is sampled by position: [2, 2, 5] gives P=2 twice as often
    _, mask = add_color_patches(torch.zeros(n, 2, 16, 16), num_points=1, sample_Ps=[2, 2, 5], generator=gen(10))
    frac2 = (mask.sum(dim=(1, 2, 3)) == 4).double().mean().item()
    assert abs(frac2 - 2 / 3) < 5 * math.sqrt(2 / 9 / n)


def _placement_distribution(length, patch, samp):
    """Exact distribution of the top-left coordinate along an axis of the given length (add_color_patches_rand_gt):
    normal: floor(clip(N(S/2, S/4), 0, S-1)) with S = length - patch + 1; uniform over 0..S-1."""
    s = length - patch + 1
    if samp == "uniform":
        return np.full(s, 1.0 / s)
    mu, sigma = s / 2, s / 4
    cdf = lambda x: 0.5 * (1 + math.erf((x - mu) / (sigma * math.sqrt(2))))  # noqa: E731
    probs = np.array([cdf(k + 1) - cdf(k) for k in range(s)])
    probs[0] = cdf(1)  # everything below 0 is clipped to 0
    probs[-1] = 1 - cdf(s - 1)  # everything above S-1 is clipped to S-1
    return probs


def _sample_corners(n, height, width, patch, samp, seed, chunk=1000):
    g = gen(seed)
    tops, lefts = [], []
    for _ in range(n // chunk):
        _, mask = add_color_patches(torch.zeros(chunk, 2, height, width), num_points=1, sample_Ps=[patch], samp=samp,
                                    use_avg=False, generator=g)
        top, left, h, w = mask_bbox(mask)
        assert (h == patch).all() and (w == patch).all()
        tops.append(top)
        lefts.append(left)
    return torch.cat(tops).numpy(), torch.cat(lefts).numpy()


@pytest.mark.parametrize("samp", ["normal", "uniform"])
def test_placement(samp):
    # Non-square, so rows and columns can't be swapped unnoticed. Small images and many draws:
    # the SE of the mean corner is 4/sqrt(16000) = 0.03 px (rows) and 0.06 px (columns), so even
    # a half-pixel shift of the distribution is detected.
    height, width, patch, n = 20, 36, 5, 16000
    tops, lefts = _sample_corners(n, height, width, patch, samp, seed=11 if samp == "normal" else 12, chunk=4000)
    for values, length in ((tops, height), (lefts, width)):
        probs = _placement_distribution(length, patch, samp)
        k = np.arange(len(probs))
        mean = (k * probs).sum()
        std = math.sqrt(((k - mean) ** 2 * probs).sum())
        kurt = ((k - mean) ** 4 * probs).sum() / std ** 4
        assert values.min() >= 0 and values.max() <= length - patch
        assert abs(values.mean() - mean) < 5 * std / math.sqrt(n)
        assert abs(values.std() - std) < 5 * std * math.sqrt((kurt - 1) / (4 * n))
        # every value's frequency, within 5 binomial standard errors
        freq = np.bincount(values, minlength=len(probs)) / n
        assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / n) + 1e-12)
        if samp == "uniform":
            assert mean == pytest.approx((length - patch) / 2)
            assert values.min() == 0 and values.max() == length - patch  # both ends are reachable
        else:
            # the clipped ends collect the tails: P(0) = P(S-1) = Phi(-2 + 4/S) ~ 3%
            assert values.min() == 0 and values.max() == length - patch
            assert mean == pytest.approx((length - patch + 1) / 2 - 0.5, abs=0.05)


# ----------------------------------------------------------------------------------------------
# hint colours and overlaps
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hint_is_patch_mean(dtype):
    n = 64
    ab = random_ab(n, 24, 20, seed=13, dtype=dtype)
    hint, mask = add_color_patches(ab, num_points=1, generator=gen(14))
    assert hint.dtype == dtype and mask.dtype == dtype
    top, left, h, w = mask_bbox(mask)
    assert torch.equal(h, w) and (h >= 1).all() and (h <= 9).all()
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for i in range(n):
        t, l, s = int(top[i]), int(left[i]), int(h[i])
        patch = (slice(t, t + s), slice(l, l + s))
        expected = ab[i, :, patch[0], patch[1]].double().mean(dim=(1, 2))
        region = hint[i, :, patch[0], patch[1]].double()
        assert (region - expected.view(2, 1, 1)).abs().max() < tol
        outside = hint[i].clone()
        outside[:, patch[0], patch[1]] = 0
        assert (outside == 0).all()
    # without averaging the ground truth is copied under the mask
    hint, mask = add_color_patches(ab, num_points=3, use_avg=False, generator=gen(14))
    assert torch.equal(hint, ab * mask)


def test_overlap_later_patch_wins():
    n, height, width, sizes, seed = 300, 12, 12, [3, 4, 5, 6], 15
    ab = random_ab(n, height, width, seed=16, dtype=torch.float64)
    hint, mask = add_color_patches(ab, num_points=2, sample_Ps=sizes, samp="normal", generator=gen(seed))

    # Reproduce the draws (with num_points given: patch-size indices, then normal positions for
    # all N x K hints) and paint the patches sequentially, as the original does: k=0 then k=1.
    g = gen(seed)
    size_idx = torch.randint(len(sizes), (n, 2), generator=g)
    z = torch.randn(n, 2, 2, generator=g, dtype=torch.float64).numpy()
    ab_np = ab.numpy()
    exp_hint = np.zeros_like(ab_np)
    exp_mask = np.zeros((n, 1, height, width))
    overlapping = differing = 0
    for i in range(n):
        covered = np.zeros((height, width), dtype=np.int64)
        means = []
        for k in range(2):
            p = sizes[int(size_idx[i, k])]
            corner = []
            for axis, length in enumerate((height, width)):
                s = length - p + 1
                corner.append(int(math.floor(min(max(s / 2 + z[i, k, axis] * s / 4, 0), s - 1))))
            t, l = corner
            mean = ab_np[i, :, t:t + p, l:l + p].mean(axis=(1, 2))
            exp_hint[i, :, t:t + p, l:l + p] = mean[:, None, None]
            exp_mask[i, 0, t:t + p, l:l + p] = 1
            covered[t:t + p, l:l + p] += 1
            means.append(mean)
        if (covered == 2).any():
            overlapping += 1
            differing += int(np.abs(means[0] - means[1]).max() > 1e-3)
    assert overlapping > 100 and differing > 100  # the test exercises real overlaps
    assert np.array_equal(mask.numpy(), exp_mask), "reproduced patch geometry differs (RNG draw order changed?)"
    assert np.abs(hint.numpy() - exp_hint).max() < 1e-12


def test_every_painted_pixel_has_some_covering_patch_mean():
    # order-free invariant: with one patch size, every painted pixel carries the mean of a P x P
    # window that contains it and lies inside the image
    p = 4
    ab = random_ab(40, 16, 16, seed=17, dtype=torch.float64)
    hint, mask = add_color_patches(ab, num_points=6, sample_Ps=[p], generator=gen(18))
    windows = torch.nn.functional.avg_pool2d(ab, p, stride=1)  # N x 2 x 13 x 13: mean at each corner
    for i in range(40):
        for y, x in zip(*torch.nonzero(mask[i, 0], as_tuple=True)):
            y, x = int(y), int(x)
            cands = windows[i, :, max(0, y - p + 1):y + 1, max(0, x - p + 1):x + 1].reshape(2, -1)
            assert (cands - hint[i, :, y, x].view(2, 1)).abs().sum(dim=0).min() < 1e-12
    assert (hint * (1 - mask) == 0).all()


# ----------------------------------------------------------------------------------------------
# get_colorization_data: mask centring, grayscale filter, reproducibility, validation
# ----------------------------------------------------------------------------------------------
def colourful_rgb(n, h=16, w=16, seed=19):
    return torch.rand(n, 3, h, w, generator=gen(seed))


def test_mask_cent_and_no_hints():
    rgb = colourful_rgb(3)
    lab = rgb2lab_norm(rgb)
    b = get_colorization_data(rgb, ab_thresh=0, num_points=3, mask_cent=0.5, generator=gen(20))
    assert isinstance(b, ColorizationBatch)
    assert set(b.mask_B.unique().tolist()) == {-0.5, 0.5}
    assert torch.equal(b.A, lab[:, :1]) and torch.equal(b.B, lab[:, 1:])
    assert ((b.mask_B < 0).expand_as(b.hint_B) <= (b.hint_B == 0)).all()  # no hint colour outside the mask
    b0 = get_colorization_data(rgb, ab_thresh=0, num_points=3, mask_cent=0.0, generator=gen(20))
    assert set(b0.mask_B.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(b0.mask_B, b.mask_B + 0.5) and torch.equal(b0.hint_B, b.hint_B)
    none = get_colorization_data(rgb, ab_thresh=0, p=1.0, mask_cent=0.5, generator=gen(21))
    assert (none.mask_B == -0.5).all() and (none.hint_B == 0).all()
    assert none.mask_B.shape == (3, 1, 16, 16) and none.hint_B.shape == (3, 2, 16, 16)


def test_grayscale_filter():
    rgb = colourful_rgb(4)
    rgb[2] = rgb[2].mean(dim=0, keepdim=True)  # R = G = B
    lab = rgb2lab_norm(rgb)
    b = get_colorization_data(rgb, ab_thresh=5.0, num_points=torch.tensor([1, 2, 9, 3]), sample_Ps=[1],
                              samp="uniform", generator=gen(22))
    assert b.keep.tolist() == [True, True, False, True]
    assert b.A.shape == (3, 1, 16, 16) and b.B.shape == (3, 2, 16, 16) and b.hint_B.shape == (3, 2, 16, 16)
    assert torch.equal(b.A, lab[[0, 1, 3], :1]) and torch.equal(b.B, lab[[0, 1, 3], 1:])
    # the per-image counts are filtered with the images: [1, 2, 3], not [1, 2, 9]
    assert (b.mask_B + 0.5).sum(dim=(1, 2, 3)).tolist() == [1.0, 2.0, 3.0]
    b = get_colorization_data(rgb, ab_thresh=0.0, generator=gen(22))
    assert b.keep.tolist() == [True] * 4 and b.A.shape[0] == 4
    gray = rgb.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    assert get_colorization_data(gray, ab_thresh=5.0, generator=gen(22)) is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_colorful_mask_threshold_boundary(dtype):
    thr = torch.tensor(5.0 / 110.0, dtype=dtype)  # the threshold as the comparison sees it
    below = torch.nextafter(thr, torch.tensor(0.0, dtype=dtype))
    ab = torch.zeros(4, 2, 3, 3, dtype=dtype)
    ab[0, 0, 0, 0] = thr  # a spread exactly 5/110: kept (>=)
    ab[1, 0, 0, 0] = below  # just below: dropped
    ab[2, 0, 1, 1], ab[2, 1, 2, 2] = thr / 2, -thr / 2  # 2.5 in a plus 2.5 in b: the spreads add up
    ab[3] = 0.3  # colourful but flat: spread 0, dropped
    assert colorful_mask(ab, 5.0).tolist() == [True, False, True, False]
    assert colorful_mask(ab, 0.0).tolist() == [True] * 4
    assert colorful_mask(ab, 5.0, ab_norm=55.0).tolist() == [False] * 4  # the threshold is in Lab units


def test_reproducible_from_seed():
    rgb = colourful_rgb(4, 24, 24, seed=23)
    a = get_colorization_data(rgb, ab_thresh=0, p=1 / 8, generator=gen(24))
    b = get_colorization_data(rgb, ab_thresh=0, p=1 / 8, generator=gen(24))
    c = get_colorization_data(rgb, ab_thresh=0, p=1 / 8, generator=gen(25))
    assert torch.equal(a.hint_B, b.hint_B) and torch.equal(a.mask_B, b.mask_B)
    assert not torch.equal(a.mask_B, c.mask_B)


def test_invalid_arguments():
    ab = torch.zeros(2, 2, 8, 12)
    with pytest.raises(ValueError):
        add_color_patches(ab, num_points=1, sample_Ps=[9])  # larger than H = 8
    with pytest.raises(ValueError):
        add_color_patches(ab, num_points=1, sample_Ps=[0, 2])
    with pytest.raises(ValueError):
        add_color_patches(ab, num_points=1, sample_Ps=[2], samp="gaussian")
    hint, mask = add_color_patches(ab, num_points=1, sample_Ps=[8])  # exactly the image height is fine
    assert mask.sum() == 2 * 64
    with pytest.raises(ValueError):
        get_colorization_data(torch.rand(1, 3, 8, 8), ab_thresh=0, num_points=1, sample_Ps=[1, 16])
