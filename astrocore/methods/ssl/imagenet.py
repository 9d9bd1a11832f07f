"""The ImageNet scheme: a torchvision ResNet-18's ImageNet weights as frozen features, offered only
when the weights are already on this disk (torch's hub cache); nothing is ever downloaded."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ...data.dataset import DataError

IMAGENET_BACKBONE = "resnet18"
_PATTERN = "resnet18-*.pth"


def imagenet_weights_path() -> Path | None:
    """torchvision's resnet18 ImageNet checkpoint in $TORCH_HOME/hub/checkpoints (default
    ~/.cache/torch), or None when it is not on this disk."""
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    found = sorted((home / "hub" / "checkpoints").glob(_PATTERN))
    return found[0] if found else None


def imagenet_status() -> str:
    """A sentence for the app and the CLI: whether the ImageNet scheme can run here."""
    path = imagenet_weights_path()
    if path is None:
        home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
        return (f"ImageNet weights are not on this disk (looked for {_PATTERN} in {home / 'hub' / 'checkpoints'}); "
                "the imagenet scheme is unavailable. astrocore never downloads weights.")
    return f"ImageNet weights found: {path}."


def load_imagenet_backbone(net) -> None:
    """Load ImageNet weights into ``net.backbone`` (a timm resnet18); the RGB first convolution is
    averaged over its colours and repeated for every band."""
    path = imagenet_weights_path()
    if path is None:
        raise DataError(imagenet_status())
    if net.config.backbone != IMAGENET_BACKBONE:
        raise DataError(f"The imagenet scheme uses backbone={IMAGENET_BACKBONE!r}; got {net.config.backbone!r}.")
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no pickled code
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    first = state["conv1.weight"]
    state["conv1.weight"] = first.mean(dim=1, keepdim=True).repeat(1, net.n_bands, 1, 1) * 3 / net.n_bands
    net.backbone.load_state_dict(state, strict=False)
