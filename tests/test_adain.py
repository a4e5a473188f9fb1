"""models/adain.py against the facts of the AdaIN weight files and of stylize-datasets.

The tables below are written from the weight files' published layout, not from the code under test.
"""
import io
import math
import os
import subprocess
import sys

import pytest
import torch
import torchvision.utils
from PIL import Image
from torch import nn

from models.adain import (AdaIN, MIN_SIDE, RELU4_1_END, adain, build_decoder, build_vgg_normalised, mean_std,
                          resolve_weight_path, to_uint8_rounded)
from scripts.make_study_smoke_data import fake_adain_state_dicts
from tests.helpers import TouchOnUnpickle
from util.checkpoint import CheckpointError

# the weight files' key -> shape, in file order (weight before bias, ascending child index)
VGG_CONVS = [(0, 3, 3, 1), (2, 64, 3, 3), (5, 64, 64, 3), (9, 128, 64, 3), (12, 128, 128, 3), (16, 256, 128, 3),
             (19, 256, 256, 3), (22, 256, 256, 3), (25, 256, 256, 3), (29, 512, 256, 3), (32, 512, 512, 3),
             (35, 512, 512, 3), (38, 512, 512, 3), (42, 512, 512, 3), (45, 512, 512, 3), (48, 512, 512, 3),
             (51, 512, 512, 3)]
DECODER_CONVS = [(1, 256, 512), (5, 256, 256), (8, 256, 256), (11, 256, 256), (14, 128, 256), (18, 128, 128),
                 (21, 64, 128), (25, 64, 64), (28, 3, 64)]
VGG_KEYS = [(f"{i}.{p}", (o, c, k, k) if p == "weight" else (o,)) for i, o, c, k in VGG_CONVS for p in ("weight", "bias")]
DECODER_KEYS = [(f"{i}.{p}", (o, c, 3, 3) if p == "weight" else (o,)) for i, o, c in DECODER_CONVS
                for p in ("weight", "bias")]
UNEXPECTED_IN_PREFIX = [k for k, _ in VGG_KEYS if int(k.split(".")[0]) > 30]


def random_state(keys, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in keys}


def reference_nets():
    """The reference architecture written out from the published layer tables, with
    Stylized-ImageNet's spelling of the upsampling: an independent construction."""
    def pad_conv(cin, cout):
        return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3)), nn.ReLU()]

    def pool():
        return [nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)]

    vgg = ([nn.Conv2d(3, 3, (1, 1))] + pad_conv(3, 64) + pad_conv(64, 64) + pool() + pad_conv(64, 128)
           + pad_conv(128, 128) + pool() + pad_conv(128, 256) + pad_conv(256, 256) * 1 + pad_conv(256, 256)
           + pad_conv(256, 256) + pool() + pad_conv(256, 512) + sum([pad_conv(512, 512) for _ in range(3)], [])
           + pool() + sum([pad_conv(512, 512) for _ in range(4)], []))
    up = [nn.UpsamplingNearest2d(scale_factor=2)]
    decoder = (pad_conv(512, 256) + up + pad_conv(256, 256) * 1 + pad_conv(256, 256) + pad_conv(256, 256)
               + pad_conv(256, 128) + up + pad_conv(128, 128) + pad_conv(128, 64) + up + pad_conv(64, 64)
               + pad_conv(64, 3)[:2])
    vgg, decoder = nn.Sequential(*vgg), nn.Sequential(*decoder)
    assert len(vgg) == 53 and len(decoder) == 29
    assert isinstance(vgg[30], nn.ReLU) and isinstance(vgg[29], nn.Conv2d) and vgg[29].out_channels == 512
    return vgg, decoder


def reference_stylize(vgg, decoder, content, style, alpha):
    """stylize-datasets' computation (function.py adaptive_instance_normalization, stylize.py style_transfer), written independently."""
    enc = nn.Sequential(*list(vgg.children())[:31])
    fc, fs = enc(content), enc(style)

    def stats(f):
        n, c = f.shape[:2]
        var = f.view(n, c, -1).var(dim=2) + 1e-5
        return f.view(n, c, -1).mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)

    (mc, sc), (ms, ss) = stats(fc), stats(fs)
    t = (fc - mc) / sc * ss + ms
    return decoder(alpha * t + (1 - alpha) * fc)


@pytest.fixture(scope="module")
def model():
    """Random weights scaled so that outputs have contrast (scripts/make_study_smoke_data.py)."""
    vgg, decoder = build_vgg_normalised(), build_decoder()
    vgg_state, decoder_state = fake_adain_state_dicts(seed=0)
    vgg.load_state_dict(vgg_state)
    decoder.load_state_dict(decoder_state)
    return AdaIN(vgg, decoder)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Random-tensor files with exactly the published keys and shapes, in the zip format."""
    root = tmp_path_factory.mktemp("adain_weights")
    torch.save(random_state(VGG_KEYS, 0), root / "vgg_normalised.pth")
    torch.save(random_state(DECODER_KEYS, 1), root / "decoder.pth")
    return root


def test_state_dict_keys_shapes_and_counts_match_the_files():
    for net, keys, count in ((build_vgg_normalised(), VGG_KEYS, 20_024_396), (build_decoder(), DECODER_KEYS, 3_505_219)):
        state = net.state_dict()
        assert [(k, tuple(v.shape)) for k, v in state.items()] == keys
        assert all(v.dtype == torch.float32 for v in state.values())
        assert sum(v.numel() for v in state.values()) == count
    assert len(VGG_KEYS) == 34 and len(DECODER_KEYS) == 18
    assert len(build_vgg_normalised()) == 53 and len(build_decoder()) == 29
    prefix = nn.Sequential(*list(build_vgg_normalised().children())[:RELU4_1_END])
    assert sum(p.numel() for p in prefix.parameters()) == 3_505_740


@pytest.mark.parametrize("legacy", [False, True])
def test_strict_load_is_bit_identical_in_both_serialisations(tmp_path, legacy):
    vgg_state, dec_state = random_state(VGG_KEYS, 2), random_state(DECODER_KEYS, 3)
    for name, state in (("vgg_normalised.pth", vgg_state), ("decoder.pth", dec_state)):
        torch.save(state, tmp_path / name, _use_new_zipfile_serialization=not legacy)
    model = AdaIN.from_files(str(tmp_path / "vgg_normalised.pth"), str(tmp_path / "decoder.pth"))
    encoder_state = model.encoder.state_dict()
    assert list(encoder_state) == [k for k, _ in VGG_KEYS if k not in UNEXPECTED_IN_PREFIX]  # the first 20
    for k, v in encoder_state.items():
        assert torch.equal(v, vgg_state[k])
    for k, v in model.decoder.state_dict().items():
        assert torch.equal(v, dec_state[k])


def test_prefix_only_load_leaves_exactly_the_14_deeper_keys():
    prefix = nn.Sequential(*list(build_vgg_normalised().children())[:RELU4_1_END])
    result = prefix.load_state_dict(random_state(VGG_KEYS, 4), strict=False)
    assert result.missing_keys == []
    assert sorted(result.unexpected_keys) == sorted(UNEXPECTED_IN_PREFIX) and len(UNEXPECTED_IN_PREFIX) == 14


def test_wrong_file_is_a_one_line_checkpoint_error(tmp_path, weight_files):
    bad = random_state(DECODER_KEYS, 0)
    bad["28.weight"] = torch.zeros(4, 64, 3, 3)
    torch.save(bad, tmp_path / "decoder.pth")
    with pytest.raises(CheckpointError) as info:
        AdaIN.from_files(str(weight_files / "vgg_normalised.pth"), str(tmp_path / "decoder.pth"))
    assert "28.weight (4, 64, 3, 3) vs (3, 64, 3, 3)" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="missing keys: 0.weight"):  # the files swapped
        AdaIN.from_files(str(weight_files / "decoder.pth"), str(weight_files / "decoder.pth"))


@pytest.mark.parametrize("content_hw, style_hw, alpha", [
    ((224, 224), (224, 224), 1.0), ((50, 37), (64, 64), 1.0), ((40, 72), (57, 33), 0.5), ((33, 41), (48, 48), 0.0)])
def test_equivalent_to_the_reference_architecture(weight_files, content_hw, style_hw, alpha):
    model = AdaIN.from_files(str(weight_files / "vgg_normalised.pth"), str(weight_files / "decoder.pth"))
    vgg, decoder = reference_nets()
    vgg.load_state_dict(torch.load(weight_files / "vgg_normalised.pth", weights_only=True))
    decoder.load_state_dict(torch.load(weight_files / "decoder.pth", weights_only=True))
    g = torch.Generator().manual_seed(sum(content_hw))
    content, style = torch.rand(1, 3, *content_hw, generator=g), torch.rand(1, 3, *style_hw, generator=g)
    with torch.no_grad():
        ours = model(content, style, alpha=alpha)
        ref = reference_stylize(vgg, decoder, content, style, alpha)
    assert ours.shape == ref.shape == (1, 3, 8 * math.ceil(content_hw[0] / 8), 8 * math.ceil(content_hw[1] / 8))
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_adain_hand_computed_example():
    """1x1x2x2 planes, small enough variance that the eps placement shows: unbiased variance
    (divisor H*W - 1 = 3) and eps = 1e-5 added to the variance before the square root."""
    fc = torch.tensor([[[[0.0, 0.0], [0.0, 0.002]]]], dtype=torch.float64)
    fs = torch.tensor([[[[0.0, 0.0], [0.0, 4.0]]]], dtype=torch.float64)
    # by hand: content mean 0.0005, unbiased var (3 * 0.0005^2 + 0.0015^2) / 3 = 1e-6;
    # style mean 1, unbiased var (3 * 1 + 9) / 3 = 4
    sigma_c, sigma_s = math.sqrt(1e-6 + 1e-5), math.sqrt(4 + 1e-5)
    expected = [(v - 0.0005) / sigma_c * sigma_s + 1.0 for v in (0.0, 0.0, 0.0, 0.002)]
    out = adain(fc, *mean_std(fs))
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-12)
    assert out[0, 0, 1, 1].item() == pytest.approx(1.0 + 0.0015 / math.sqrt(1.1e-5) * sigma_s, rel=1e-12)
    # the alternatives differ visibly: biased variance, or eps after the square root
    biased = (0.0015 / math.sqrt(7.5e-7 + 1e-5)) * sigma_s + 1.0
    eps_after = (0.0015 / (math.sqrt(1e-6) + 1e-5)) * sigma_s + 1.0
    assert abs(out[0, 0, 1, 1].item() - biased) > 0.01 and abs(out[0, 0, 1, 1].item() - eps_after) > 1.0
    mean, std = mean_std(fs)
    assert mean.shape == (1, 1, 1, 1) and mean.item() == 1.0 and std.item() == pytest.approx(sigma_s, rel=1e-12)


def test_adain_gives_the_style_statistics():
    g = torch.Generator().manual_seed(0)
    fc, fs = torch.rand(2, 8, 5, 7, generator=g) * 3, torch.rand(2, 8, 4, 4, generator=g) + 2
    out = adain(fc, *mean_std(fs))
    (m_out, s_out), (m_s, s_s) = mean_std(out), mean_std(fs)
    assert torch.allclose(m_out, m_s, atol=1e-5)
    assert torch.allclose(s_out, s_s, rtol=1e-3)  # up to the eps effect


def test_size_rules_and_minimum_side(model):
    style = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 50, 37), style).shape == (1, 3, 56, 40)
        assert model(torch.rand(1, 3, MIN_SIDE, 20), style).shape == (1, 3, 16, 24)  # 9 px works
        assert model(torch.rand(1, 3, 16, 16), style).shape == (1, 3, 16, 16)
        with pytest.raises(RuntimeError, match="[Pp]adding size"):
            model(torch.rand(1, 3, 8, 20), style)  # 8 px: the relu4_1 map is 1 px wide
    assert MIN_SIDE == 9


def test_save_rounding_matches_torchvision_save_image(tmp_path):
    values = torch.tensor([1.3, -0.2, 0.6 / 255, 0.4 / 255, 0.5 / 255, 254.5 / 255, 1.0, 0.0])
    assert to_uint8_rounded(values.clone()).tolist() == [255, 0, 1, 0, 1, 255, 255, 0]
    image = values.reshape(1, 1, 1, 8).expand(1, 3, 1, 8).contiguous()
    torchvision.utils.save_image(image, tmp_path / "ref.png", padding=0)
    reference = torch.from_numpy(__import__("numpy").array(Image.open(tmp_path / "ref.png"))).permute(2, 0, 1)
    assert torch.equal(to_uint8_rounded(image.clone())[0], reference)


def test_alpha_zero_decodes_the_content_features(model):
    """What is checked: with alpha 0, decode() returns decoder(encoder(content)) BIT FOR BIT (the
    AdaIN term is multiplied by 0 and the features by 1), which is a reconstruction, not the
    input image; alpha 1 is pure AdaIN and differs."""
    content, style = torch.rand(2, 3, 24, 32), torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        features = model.encode(content)
        stats = model.style_statistics(style)
        zero = model.decode(features, *stats, alpha=0.0)
        assert torch.equal(zero, model.decoder(features))
        assert (zero - model.decode(features, *stats, alpha=1.0)).abs().mean() > 0.01
        assert (zero - content).abs().mean() > 0.05  # a reconstruction by random weights, not the input
        assert torch.equal(model.decode(features, *stats, alpha=1.0), model.decoder(adain(features, *stats)))


def test_batched_pairs_equal_one_pair_at_a_time(model):
    """Per-sample statistics make batching exact up to the convolutions' summation order."""
    torch.manual_seed(0)
    contents, styles = torch.rand(3, 3, 24, 24), [torch.rand(1, 3, s, s + 5) for s in (16, 24, 32)]
    with torch.no_grad():
        stats = [model.style_statistics(s) for s in styles]
        features = model.encode(contents)
        index = torch.tensor([0, 0, 1, 2, 2, 1])
        chosen = [0, 1, 2, 0, 1, 2]
        batch = model.decode(features[index], torch.cat([stats[c][0] for c in chosen]),
                             torch.cat([stats[c][1] for c in chosen]), alpha=0.7)
        for j, (i, c) in enumerate(zip(index.tolist(), chosen)):
            alone = model.decode(model.encode(contents[i:i + 1]), *stats[c], alpha=0.7)
            assert torch.allclose(batch[j:j + 1], alone, rtol=1e-4, atol=1e-5)
        assert (batch[0] - batch[1]).abs().mean() > 0.01  # different styles give different images


def test_z_spelling_fallback(tmp_path):
    s_path = str(tmp_path / "vgg_normalised.pth")
    assert resolve_weight_path(s_path) == s_path  # neither exists: the path as given
    (tmp_path / "vgg_normalized.pth").write_bytes(b"x")
    assert resolve_weight_path(s_path) == str(tmp_path / "vgg_normalized.pth")
    (tmp_path / "vgg_normalised.pth").write_bytes(b"x")
    assert resolve_weight_path(s_path) == s_path  # the s-spelling wins when both exist


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, weight_files):
    marker = tmp_path / "pwned"
    evil_path = tmp_path / "decoder.pth"
    state = random_state(DECODER_KEYS, 0)
    state["1.bias"] = TouchOnUnpickle(marker)
    torch.save(state, evil_path)
    assert not marker.exists()
    content = tmp_path / "content"
    content.mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(content / "c.png")
    proc = subprocess.run(
        [sys.executable, "make_stylized_dataset.py", "--content_dir", str(content), "--style_dir", str(content),
         "--output_dir", str(tmp_path / "out"), "--vgg", str(weight_files / "vgg_normalised.pth"),
         "--decoder", str(evil_path), "--gpu_ids", "-1"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refused to load" in lines[0], proc.stderr
    assert str(evil_path) in lines[0] and "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with pytest.raises(Exception):
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert not marker.exists()
