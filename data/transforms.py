"""The original's image transforms, ending in uint8 tensors (3 x H x W) instead of floats.

``x.float() / 255`` on the device gives exactly what ToTensor would have given.
"""
from __future__ import annotations

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

# The original's PIL codes 1, 2, 3.
_INTERPOLATIONS = (InterpolationMode.LANCZOS, InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)


def train_transform(load_size: int = 256, fine_size: int = 176) -> T.Compose:
    """The original's training transform: one of 6 resizes (shorter side to load_size keeping aspect, or squashed to
    load_size x load_size; Lanczos, bilinear or bicubic), one of 3 RandomResizedCrop(fine_size)
    (scale 0.08-1, ratio 3/4-4/3, same 3 interpolations), a horizontal flip, then uint8."""
    resizes = [T.Resize(load_size, interpolation=i) for i in _INTERPOLATIONS]
    resizes += [T.Resize((load_size, load_size), interpolation=i) for i in _INTERPOLATIONS]
    crops = [T.RandomResizedCrop(fine_size, interpolation=i) for i in _INTERPOLATIONS]
    return T.Compose([T.RandomChoice(resizes), T.RandomChoice(crops), T.RandomHorizontalFlip(), T.PILToTensor()])


def eval_transform(load_size: int = 256) -> T.Compose:
    """The test scripts' transform: squash to load_size x load_size (bilinear), then uint8."""
    return T.Compose([T.Resize((load_size, load_size), interpolation=InterpolationMode.BILINEAR), T.PILToTensor()])


def center_crop_transform(load_size: int = 256, fine_size: int = 176) -> T.Compose:
    """A deterministic view for linear-probe evaluation: shorter side to load_size (bilinear,
    aspect kept), centre crop fine_size x fine_size, then uint8 3 x H x W."""
    return T.Compose([T.Resize(load_size, interpolation=InterpolationMode.BILINEAR), T.CenterCrop(fine_size),
                      T.PILToTensor()])
