"""Image folders, transforms and loaders. Images leave this package as uint8 RGB tensors
(3 x H x W); conversion to float, Lab and hints happens on the training device (util.hints)."""
