"""models/networks.py and util/checkpoint.py: architecture, state_dict, gradient routing,
initialisation, learning-rate schedules and weight files.

The expected state_dict is hard-coded from the official SIGGRAPH17 weight file's listing: the key
names, their order and shapes must match the original so that official weights load.
"""
import os
import pathlib
from collections import OrderedDict

import pytest
import torch
from torch import nn

from models.networks import define_G, get_norm_layer, get_scheduler, init_weights, lambda_rule_factor
from util.checkpoint import CheckpointError, load_network, save_network


# The official weights' state_dict, all 107 entries, written out in full (the order is the order torch lists them).
EXPECTED_STATE = [
    ("model1.0.weight", (64, 4, 3, 3)), ("model1.0.bias", (64,)),
    ("model1.2.weight", (64, 64, 3, 3)), ("model1.2.bias", (64,)),
    ("model1.4.weight", (64,)), ("model1.4.bias", (64,)), ("model1.4.running_mean", (64,)),
    ("model1.4.running_var", (64,)), ("model1.4.num_batches_tracked", ()),
    ("model2.0.weight", (128, 64, 3, 3)), ("model2.0.bias", (128,)),
    ("model2.2.weight", (128, 128, 3, 3)), ("model2.2.bias", (128,)),
    ("model2.4.weight", (128,)), ("model2.4.bias", (128,)), ("model2.4.running_mean", (128,)),
    ("model2.4.running_var", (128,)), ("model2.4.num_batches_tracked", ()),
    ("model3.0.weight", (256, 128, 3, 3)), ("model3.0.bias", (256,)),
    ("model3.2.weight", (256, 256, 3, 3)), ("model3.2.bias", (256,)),
    ("model3.4.weight", (256, 256, 3, 3)), ("model3.4.bias", (256,)),
    ("model3.6.weight", (256,)), ("model3.6.bias", (256,)), ("model3.6.running_mean", (256,)),
    ("model3.6.running_var", (256,)), ("model3.6.num_batches_tracked", ()),
    ("model4.0.weight", (512, 256, 3, 3)), ("model4.0.bias", (512,)),
    ("model4.2.weight", (512, 512, 3, 3)), ("model4.2.bias", (512,)),
    ("model4.4.weight", (512, 512, 3, 3)), ("model4.4.bias", (512,)),
    ("model4.6.weight", (512,)), ("model4.6.bias", (512,)), ("model4.6.running_mean", (512,)),
    ("model4.6.running_var", (512,)), ("model4.6.num_batches_tracked", ()),
    ("model5.0.weight", (512, 512, 3, 3)), ("model5.0.bias", (512,)),
    ("model5.2.weight", (512, 512, 3, 3)), ("model5.2.bias", (512,)),
    ("model5.4.weight", (512, 512, 3, 3)), ("model5.4.bias", (512,)),
    ("model5.6.weight", (512,)), ("model5.6.bias", (512,)), ("model5.6.running_mean", (512,)),
    ("model5.6.running_var", (512,)), ("model5.6.num_batches_tracked", ()),
    ("model6.0.weight", (512, 512, 3, 3)), ("model6.0.bias", (512,)),
    ("model6.2.weight", (512, 512, 3, 3)), ("model6.2.bias", (512,)),
    ("model6.4.weight", (512, 512, 3, 3)), ("model6.4.bias", (512,)),
    ("model6.6.weight", (512,)), ("model6.6.bias", (512,)), ("model6.6.running_mean", (512,)),
    ("model6.6.running_var", (512,)), ("model6.6.num_batches_tracked", ()),
    ("model7.0.weight", (512, 512, 3, 3)), ("model7.0.bias", (512,)),
    ("model7.2.weight", (512, 512, 3, 3)), ("model7.2.bias", (512,)),
    ("model7.4.weight", (512, 512, 3, 3)), ("model7.4.bias", (512,)),
    ("model7.6.weight", (512,)), ("model7.6.bias", (512,)), ("model7.6.running_mean", (512,)),
    ("model7.6.running_var", (512,)), ("model7.6.num_batches_tracked", ()),
    ("model8up.0.weight", (512, 256, 4, 4)), ("model8up.0.bias", (256,)),
    ("model8.1.weight", (256, 256, 3, 3)), ("model8.1.bias", (256,)),
    ("model8.3.weight", (256, 256, 3, 3)), ("model8.3.bias", (256,)),
    ("model8.5.weight", (256,)), ("model8.5.bias", (256,)), ("model8.5.running_mean", (256,)),
    ("model8.5.running_var", (256,)), ("model8.5.num_batches_tracked", ()),
    ("model9up.0.weight", (256, 128, 4, 4)), ("model9up.0.bias", (128,)),
    ("model9.1.weight", (128, 128, 3, 3)), ("model9.1.bias", (128,)),
    ("model9.3.weight", (128,)), ("model9.3.bias", (128,)), ("model9.3.running_mean", (128,)),
    ("model9.3.running_var", (128,)), ("model9.3.num_batches_tracked", ()),
    ("model10up.0.weight", (128, 128, 4, 4)), ("model10up.0.bias", (128,)),
    ("model10.1.weight", (128, 128, 3, 3)), ("model10.1.bias", (128,)),
    ("model3short8.0.weight", (256, 256, 3, 3)), ("model3short8.0.bias", (256,)),
    ("model2short9.0.weight", (128, 128, 3, 3)), ("model2short9.0.bias", (128,)),
    ("model1short10.0.weight", (128, 64, 3, 3)), ("model1short10.0.bias", (128,)),
    ("model_class.0.weight", (529, 256, 1, 1)), ("model_class.0.bias", (529,)),
    ("model_out.0.weight", (2, 128, 1, 1)), ("model_out.0.bias", (2,)),
]
EXPECTED_KEYS = [k for k, _ in EXPECTED_STATE]
# The nine BatchNorm layers (the only norm layers) as state_dict prefixes.
BN_PREFIXES = ["model1.4.", "model2.4.", "model3.6.", "model4.6.", "model5.6.", "model6.6.", "model7.6.",
               "model8.5.", "model9.3."]
N_PARAMS = 34_187_027
N_BUFFER_ELEMENTS = 5_769

BLOCKS = ["model1", "model2", "model3", "model4", "model5", "model6", "model7", "model8up", "model3short8",
          "model8", "model_class", "model9up", "model2short9", "model9", "model10up", "model1short10", "model10",
          "model_out"]
TRUNK = ["model1", "model2", "model3", "model4", "model5", "model6", "model7", "model8up", "model3short8", "model8"]
DECODER = ["model9up", "model2short9", "model9", "model10up", "model1short10", "model10", "model_out"]


def _inputs(n, h, w, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    A = torch.rand(n, 1, h, w, generator=g, dtype=dtype) - 0.5
    B = (torch.rand(n, 2, h, w, generator=g, dtype=dtype) - 0.5) * 0.5
    mask = (torch.rand(n, 1, h, w, generator=g) < 0.1).to(dtype)
    return A, B * mask, mask - 0.5


# ----------------------------------------------------------------------------------------------
# state_dict
# ----------------------------------------------------------------------------------------------
def test_the_nine_batchnorm_layers_are_the_only_norm_layers():
    """BN_PREFIXES (used below to tell the norm entries apart) are the generator's BatchNorm2d
    layers, in order, and it has no other normalisation layer."""
    modules = dict(define_G().named_modules())
    assert [name + "." for name, m in modules.items() if isinstance(m, nn.BatchNorm2d)] == BN_PREFIXES
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    assert sum(isinstance(m, norms) for m in modules.values()) == 9


def test_state_dict_keys_order_shapes_and_counts():
    net = define_G()
    sd = net.state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == EXPECTED_STATE
    assert sum(p.numel() for p in net.parameters()) == N_PARAMS
    assert sum(b.numel() for b in net.buffers()) == N_BUFFER_ELEMENTS
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            assert v.dtype == torch.int64 and v.dim() == 0, k
        else:
            assert v.dtype == torch.float32, k
    # The parameter count is consistent with the table: all float tensors except running stats.
    assert sum(int(torch.Size(s).numel()) for k, s in EXPECTED_STATE
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == N_PARAMS


@pytest.mark.parametrize("hw", [(32, 48), (40, 24)])
def test_output_shapes_and_range(hw):
    h, w = hw
    torch.manual_seed(0)
    net = define_G().eval()
    A, B, M = _inputs(2, h, w)
    with torch.no_grad():
        out_class, out_reg = net(A, B, M)
    assert out_class.shape == (2, 529, h // 4, w // 4)
    assert out_reg.shape == (2, 2, h, w)
    assert torch.isfinite(out_class).all()
    assert (out_reg.abs() < 1).all()
    assert out_reg.abs().max() > 0  # not a constant-zero output


def test_instance_norm_net():
    net = define_G(norm="instance")
    keys = list(net.state_dict().keys())
    expected = [k for k in EXPECTED_KEYS if not k.startswith(tuple(BN_PREFIXES))]
    assert len(expected) == 62
    assert keys == expected
    A, B, M = _inputs(2, 32, 48)
    with torch.no_grad():
        out_class, out_reg = net(A, B, M)
    assert out_class.shape == (2, 529, 8, 12) and out_reg.shape == (2, 2, 32, 48)
    assert torch.isfinite(out_class).all() and torch.isfinite(out_reg).all()
    with pytest.raises(ValueError):
        get_norm_layer("none")


# ----------------------------------------------------------------------------------------------
# gradient routing (the original's SIGGRAPHGenerator.forward)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classification", [True, False])
def test_gradient_routing(classification):
    torch.manual_seed(1)
    net = define_G(classification=classification)  # train mode: batch statistics
    A, B, M = _inputs(2, 16, 16, seed=2)
    out_class, out_reg = net(A, B, M)
    g = torch.Generator().manual_seed(3)
    loss_class = (out_class * torch.randn(out_class.shape, generator=g)).sum()
    loss_reg = (out_reg * torch.randn(out_reg.shape, generator=g)).sum()
    names, params = zip(*net.named_parameters())

    def blocks_with_grad(loss, retain):
        grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
        per_block = {}
        for name, grad in zip(names, grads):
            nonzero = grad is not None and bool(grad.abs().sum() > 0)
            per_block.setdefault(name.split(".")[0], []).append(nonzero)
        assert set(per_block) == set(BLOCKS)
        # Within a block the parameters agree: all get a gradient or none does.
        for block, flags in per_block.items():
            assert all(flags) or not any(flags), (block, flags)
        return {b for b, flags in per_block.items() if all(flags)}

    got_class = blocks_with_grad(loss_class, retain=True)
    got_reg = blocks_with_grad(loss_reg, retain=False)
    if classification:
        assert got_class == set(TRUNK) | {"model_class"}
        assert got_reg == set(DECODER)
    else:
        assert got_class == {"model_class"}
        assert got_reg == set(BLOCKS) - {"model_class"}


# ----------------------------------------------------------------------------------------------
# initialisation
# ----------------------------------------------------------------------------------------------
def _conv_like(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_init_normal():
    torch.manual_seed(4)
    net = define_G(init_type="normal")
    w = net.model5[0].weight.detach().double()
    n = w.numel()  # 2,359,296 draws: the SE of the std is 0.02/sqrt(2n) = 9e-6 (0.05%), 2% is loose
    assert abs(w.std().item() - 0.02) < 0.02 * 0.02
    assert abs(w.mean().item()) < 5 * 0.02 / n ** 0.5  # 5 standard errors
    for m in _conv_like(net):
        assert torch.count_nonzero(m.bias) == 0
        assert abs(m.weight.std().item() - 0.02) < 0.1 * 0.02  # every layer, even the smallest (258 weights)
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bn) == 9
    gamma = torch.cat([m.weight.detach().double() for m in bn])  # 2,880 values
    assert gamma.numel() == 2880
    # 5 SE: mean 0.02/sqrt(n) = 3.7e-4; std 0.02/sqrt(2n) = 2.6e-4
    assert abs(gamma.mean().item() - 1.0) < 5 * 0.02 / 2880 ** 0.5
    assert abs(gamma.std().item() - 0.02) < 5 * 0.02 / (2 * 2880) ** 0.5
    for m in bn:
        assert torch.count_nonzero(m.bias) == 0
        assert torch.count_nonzero(m.running_mean) == 0 and torch.equal(m.running_var, torch.ones_like(m.running_var))


def test_init_xavier_and_kaiming():
    torch.manual_seed(5)
    net = define_G(init_type="kaiming")
    fan_in = fan_out = 512 * 9
    for key in ("model5.0.weight", "model6.2.weight"):
        w = net.state_dict()[key].double()
        assert abs(w.std().item() - (2.0 / fan_in) ** 0.5) < 0.02 * (2.0 / fan_in) ** 0.5
    # model2.0: fan_in 64*9 = 576 -> std 0.0589, far from the 'normal' 0.02
    w = net.model2[0].weight.detach().double()
    assert abs(w.std().item() - (2.0 / 576) ** 0.5) < 0.02 * (2.0 / 576) ** 0.5
    assert all(torch.count_nonzero(m.bias) == 0 for m in _conv_like(net))

    init_weights(net, "xavier")
    expected = 0.02 * (2.0 / (fan_in + fan_out)) ** 0.5  # xavier_normal with gain 0.02: 2.95e-4
    w = net.model5[0].weight.detach().double()
    assert abs(w.std().item() - expected) < 0.02 * expected
    assert abs(w.mean().item()) < 5 * expected / w.numel() ** 0.5
    assert all(torch.count_nonzero(m.bias) == 0 for m in _conv_like(net))


def test_init_orthogonal():
    # Orthogonal init of the whole 34M-parameter net takes tens of seconds on CPU (QR of every
    # 512 x 4608 matrix), so it is applied to real blocks of the net: a Conv2d block and a
    # ConvTranspose2d layer. For a flattened weight with rows <= cols: W W^T = gain^2 I.
    net = define_G()
    torch.manual_seed(6)
    init_weights(net.model2, "orthogonal")
    init_weights(net.model10up, "orthogonal")
    for w in (net.model2[0].weight, net.model2[2].weight, net.model10up[0].weight):
        flat = w.detach().double().flatten(1)
        assert flat.shape[0] <= flat.shape[1]
        gram = flat @ flat.T
        assert torch.allclose(gram, 0.02 ** 2 * torch.eye(flat.shape[0], dtype=torch.float64), atol=1e-9)
    assert torch.count_nonzero(net.model2[0].bias) == 0
    bn = net.model2[4]
    assert abs(bn.weight.mean().item() - 1.0) < 0.01  # BatchNorm still N(1, 0.02)


def test_init_unknown_type_raises():
    with pytest.raises(ValueError):
        init_weights(nn.Sequential(nn.Conv2d(2, 2, 3)), "uniform")
    with pytest.raises(ValueError):
        define_G(init_type="bogus")


# ----------------------------------------------------------------------------------------------
# learning-rate schedules (the original's networks.get_scheduler)
# ----------------------------------------------------------------------------------------------
def test_lambda_rule_values():
    f = [lambda_rule_factor(e, 0, 100, 100) for e in range(200)]
    assert f[:100] == [1.0] * 100
    assert f[100] == pytest.approx(1 - 1 / 101, abs=1e-12) and f[100] == pytest.approx(0.990099, abs=1e-6)
    assert f[101] == pytest.approx(0.980198, abs=1e-6)
    assert f[199] == pytest.approx(0.009901, abs=1e-6)
    assert all(a > b for a, b in zip(f[99:], f[100:]))  # strictly decreasing in the decay phase
    assert [lambda_rule_factor(e, 0, 15, 0) for e in range(15)] == [1.0] * 15
    assert [lambda_rule_factor(e, 0, 3, 2) for e in range(5)] == pytest.approx([1, 1, 1, 2 / 3, 1 / 3], abs=1e-12)
    # epoch_count shifts the schedule: starting at epoch 1 of (3, 2) leaves 4 epochs
    assert [lambda_rule_factor(e, 1, 3, 2) for e in range(4)] == pytest.approx([1, 1, 2 / 3, 1 / 3], abs=1e-12)


def _lrs(scheduler, optimizer, steps, metric=None):
    out = []
    for i in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # (no gradients: a no-op, but the order torch expects)
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric(i))
    out.append(optimizer.param_groups[0]["lr"])
    return out


def _opt():
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)


def test_get_scheduler_lambda():
    opt = _opt()
    sched = get_scheduler(opt, "lambda", epoch_count=0, niter=3, niter_decay=2)
    assert _lrs(sched, opt, 4) == pytest.approx([1, 1, 1, 2 / 3, 1 / 3], abs=1e-12)


def test_get_scheduler_step():
    opt = _opt()
    sched = get_scheduler(opt, "step", lr_decay_iters=2)
    assert _lrs(sched, opt, 6) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01, 0.001], rel=1e-9)


def test_get_scheduler_plateau():
    opt = _opt()
    sched = get_scheduler(opt, "plateau")
    # constant metric: the 1st call sets the best, calls 2..6 are 5 bad epochs (= patience),
    # the 7th exceeds the patience and multiplies the lr by 0.2; again 6 calls later.
    lrs = _lrs(sched, opt, 13, metric=lambda i: 1.0)
    assert lrs == pytest.approx([1] * 7 + [0.2] * 6 + [0.04], rel=1e-9)
    # improving by 2% per epoch never reduces the lr; improving by less than the 1% relative
    # threshold (0.6% in total over 7 epochs) counts as no improvement
    opt = _opt()
    sched = get_scheduler(opt, "plateau")
    assert _lrs(sched, opt, 10, metric=lambda i: 0.98 ** i) == [1.0] * 11
    opt = _opt()
    sched = get_scheduler(opt, "plateau")
    assert _lrs(sched, opt, 7, metric=lambda i: 1.0 - 0.001 * i) == pytest.approx([1] * 7 + [0.2])
    with pytest.raises(ValueError):
        get_scheduler(_opt(), "cosine")


# ----------------------------------------------------------------------------------------------
# weight files (util/checkpoint.py)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def source_state():
    """A state_dict with non-trivial values everywhere, running stats and counters included."""
    torch.manual_seed(7)
    net = define_G()
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(17)
    return OrderedDict((k, v.clone()) for k, v in net.state_dict().items())


@pytest.fixture(scope="module")
def target_net():
    torch.manual_seed(9)  # different weights from the source
    return define_G()


def _assert_state_equal(net, state, skip_counters=False):
    got = net.state_dict()
    assert list(got) == EXPECTED_KEYS
    for k, v in state.items():
        if skip_counters and k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(got[k], v), k


def _one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip()
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def test_load_without_num_batches_tracked(tmp_path, source_state, target_net):
    state = OrderedDict((k, v) for k, v in source_state.items() if not k.endswith("num_batches_tracked"))
    assert len(state) == 98
    path = tmp_path / "old.pth"
    torch.save(state, path)
    with torch.no_grad():
        for m in target_net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.num_batches_tracked.fill_(5)
    load_network(target_net, str(path))
    _assert_state_equal(target_net, source_state, skip_counters=True)
    for k, v in target_net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert v.dtype == torch.int64 and int(v) == 0, k  # filled with 0 as the original loader did


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_load_wrapped_prefixes(tmp_path, source_state, target_net, prefix):
    path = tmp_path / "wrapped.pth"
    torch.save(OrderedDict((prefix + k, v) for k, v in source_state.items()), path)
    load_network(target_net, str(path))
    _assert_state_equal(target_net, source_state)
    # loading into a DataParallel-wrapped net works too
    with torch.no_grad():
        target_net.model_out[0].bias.zero_()
    load_network(nn.DataParallel(target_net), str(path))
    _assert_state_equal(target_net, source_state)


def _cheap_state():
    """A correctly shaped state_dict whose tensors are stride-0 views of one element each, so the
    files written for the failure cases are tiny (the loader must reject them before copying)."""
    return OrderedDict((k, torch.zeros((), dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
                        .expand(shape)) for k, shape in EXPECTED_STATE)


def _bad_state(kind):
    state = _cheap_state()
    if kind == "missing":
        del state["model4.2.weight"]
        return state, "model4.2.weight"
    if kind == "extra":
        state["model11.0.weight"] = torch.zeros(3)
        return state, "model11.0.weight"
    state["model_class.0.weight"] = torch.zeros(313, 256, 1, 1)  # the 313-class ECCV16 head
    return state, "model_class.0.weight"


def test_cheap_state_is_loadable(tmp_path, target_net):
    # the stride-0 state is itself a valid file: the failures below come from the one change each
    path = tmp_path / "zeros.pth"
    torch.save(_cheap_state(), path)
    assert path.stat().st_size < 200_000
    load_network(target_net, str(path))
    assert all(torch.count_nonzero(v) == 0 for v in target_net.state_dict().values())


@pytest.mark.parametrize("kind", ["missing", "extra", "shape"])
def test_load_mismatch_raises_one_line(tmp_path, source_state, target_net, kind):
    state, key = _bad_state(kind)
    path = tmp_path / f"{kind}.pth"
    torch.save(state, path)
    target_net.load_state_dict(source_state)
    with pytest.raises(CheckpointError) as excinfo:
        load_network(target_net, str(path))
    _one_line_error(excinfo, key)
    _assert_state_equal(target_net, source_state)  # nothing was loaded


def test_load_unreadable_files(tmp_path, target_net):
    good = tmp_path / "good.pth"
    torch.save(_cheap_state(), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.pth"
    text.write_text("this is not a weights file\nsecond line\n")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for path in (truncated, text, empty, tmp_path / "does_not_exist.pth"):
        with pytest.raises(CheckpointError) as excinfo:
            load_network(target_net, str(path))
        _one_line_error(excinfo, str(path))
    # a valid torch file that is not a state_dict of tensors
    odd = tmp_path / "list.pth"
    torch.save([1, 2, 3], odd)
    with pytest.raises(CheckpointError) as excinfo:
        load_network(target_net, str(odd))
    _one_line_error(excinfo)


class _Payload:
    """Unpickling this runs pathlib.Path.touch(marker): arbitrary code execution."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_load_refuses_code_execution(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    torch.save(OrderedDict(weight=torch.zeros(2), payload=_Payload(marker)), path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as excinfo:
        load_network(define_G(norm="instance"), str(path))
    _one_line_error(excinfo, str(path))
    assert not marker.exists()
    # The file really is malicious: an unrestricted unpickler would have run the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_save_network_plain_state_dict(tmp_path, source_state):
    net = define_G()
    net.load_state_dict(source_state)
    path = tmp_path / "sub" / "latest_net_G.pth"
    save_network(nn.DataParallel(net), str(path))  # wrapper is taken off
    obj = torch.load(path, weights_only=True)
    assert type(obj) is OrderedDict
    assert list(obj.keys()) == EXPECTED_KEYS
    assert [(k, tuple(v.shape)) for k, v in obj.items()] == EXPECTED_STATE
    for k, v in obj.items():
        assert isinstance(v, torch.Tensor) and v.device.type == "cpu"
        assert torch.equal(v, source_state[k]), k
    assert os.listdir(path.parent) == ["latest_net_G.pth"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    # and it round-trips through load_network
    other = define_G()
    load_network(other, str(path))
    _assert_state_equal(other, source_state)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch, source_state):
    net = define_G()
    path = tmp_path / "latest_net_G.pth"
    save_network(net, str(path))
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    net.load_state_dict(source_state)  # different weights: a completed save would change the file
    with pytest.raises(CheckpointError, match=r"latest_net_G.pth: cannot save \(disk full\)$"):
        save_network(net, str(path))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["latest_net_G.pth"]
