"""The SIGGRAPH17 generator (networks.py) and the colorization model around it (pix2pix_model.py)."""
import torch


def create_model(opt, device: torch.device):
    """A Pix2PixModel for ``opt`` on ``device``, set up: weights loaded when evaluating (always)
    or training with --load_model, in train mode for training and eval mode otherwise.

    Raises util.checkpoint.CheckpointError (one-line message) if the weights cannot be loaded.
    """
    from models.pix2pix_model import Pix2PixModel

    model = Pix2PixModel(opt, device)
    model.setup()
    if model.is_train:
        model.train()
    else:
        model.eval()
    return model
