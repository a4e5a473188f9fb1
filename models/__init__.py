"""The SIGGRAPH17 generator (networks.py) and the colorization model around it (pix2pix_model.py)."""
import torch


def create_model(opt, device: torch.device, dist_info=None, wrap: bool = True):
    """A Pix2PixModel for ``opt`` on ``device``, set up: weights loaded when evaluating (always)
    or training with --load_model, in train mode for training and eval mode otherwise.

    dist_info: util.distributed.DistInfo of a torchrun process (None: one process).
    wrap: apply DDP / torch.compile now (model.wrap()); train.py wraps later, after resuming.
    Raises util.checkpoint.CheckpointError (one-line message) if the weights cannot be loaded.
    """
    from models.pix2pix_model import Pix2PixModel

    model = Pix2PixModel(opt, device, dist_info)
    model.setup()
    if model.is_train:
        model.train()
    else:
        model.eval()
    if wrap:
        model.wrap()
    return model


def load_generator(path: str, norm: str = "batch", device=None):
    """A SIGGRAPHGenerator holding the weights of ``path`` (loaded strictly and safely), in eval mode.

    No random initialisation first: every weight is overwritten. Raises
    util.checkpoint.CheckpointError (one-line message) if the file does not fit.
    """
    from models.networks import SIGGRAPHGenerator, get_norm_layer
    from util.checkpoint import load_network

    net = SIGGRAPHGenerator(4, 2, norm_layer=get_norm_layer(norm), use_tanh=True)
    load_network(net, path)
    return (net.to(device) if device is not None else net).eval()
