"""The network: input scaling, a CNN backbone, and the heads of the pretext and downstream tasks.

    cutout (n, bands, h, w), image units
      -> asinh(flux / softening)                per band; keeps faint wings and bright cores
      -> backbone                               small VGG-style net, or a timm VGG / ResNet
      -> features (n, d)                        what the explorer projects and the heads read
         -> magnitude head: dense, ReLU, dense, sigmoid            (magnitude / 30, saturating)
         -> projection head: dense, ReLU, dense                     (contrastive, SimCLR)
         -> classifier: batch norm, dense, ReLU, dropout, dense     (logits; softmax outside)

Augmentations for contrastive learning and for the magnitude pretext live here too: rotations by
90 degrees and flips (the sky has no preferred orientation), small shifts, a PSF change (Gaussian
blur) and extra sky noise. None of them changes an object's magnitudes.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import SSLConfig

MAGNITUDE_SCALE = 30.0


# ============================================================================ backbone
def small_vgg(in_chans: int, width: int) -> nn.Sequential:
    """Four 3x3 conv blocks (width, 2w, 4w, 4w channels; batch norm, ReLU), max-pooling after the
    first three, global average pooling: (n, in_chans, h, w) -> (n, 4 * width)."""
    layers, channels = [], in_chans
    for index, out in enumerate((width, 2 * width, 4 * width, 4 * width)):
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        if index < 3:
            layers.append(nn.MaxPool2d(2))
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def build_backbone(name: str, in_chans: int, width: int) -> tuple[nn.Module, int]:
    """(backbone, feature width). timm models are created with ``pretrained=False``: nothing is
    ever downloaded."""
    if name == "small_vgg":
        return small_vgg(in_chans, width), 4 * width
    import timm  # here, not at the top: it pulls in torchvision and adds seconds to every CLI start

    model = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=0, global_pool="avg")
    with torch.no_grad():
        width_out = model(torch.zeros(2, in_chans, 32, 32)).shape[1]
    return model, int(width_out)


def head(in_features: int, hidden: int, out: int, dropout: float, normalise: bool = False) -> nn.Sequential:
    """The paper's head: dense -> ReLU -> dropout -> dense; with ``normalise``, batch normalisation
    of the features first (the classifier: frozen features span very different scales, and a few
    hundred steps on 100 labels cannot learn that scaling; a logistic probe on standardised
    magnitude features scores ~15 points above the same head without it)."""
    layers = [nn.BatchNorm1d(in_features)] if normalise else []
    return nn.Sequential(*layers, nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, out))


# ============================================================================ the network
class CutoutNet(nn.Module):
    """Backbone plus the heads a run needs; the buffers carry the input scaling."""

    def __init__(self, n_bands: int, config: SSLConfig, n_classes: int = 0, size: int = 32):
        super().__init__()
        self.config = config
        self.register_buffer("softening", torch.ones(n_bands))  # per band, image units
        self.register_buffer("image_size", torch.tensor(int(size)))
        self.backbone, self.n_features = build_backbone(config.backbone, n_bands, config.width)
        self.magnitude_head = head(self.n_features, config.head_hidden, n_bands * config.n_magnitude_sets,
                                   config.magnitude_dropout)
        self.projection = nn.Sequential(nn.Linear(self.n_features, self.n_features), nn.ReLU(inplace=True),
                                        nn.Linear(self.n_features, config.projection_dim))
        self.classifier = (head(self.n_features, config.head_hidden, n_classes, config.dropout, normalise=True)
                           if n_classes else None)

    @property
    def n_bands(self) -> int:
        return int(self.softening.numel())

    def scale(self, images: torch.Tensor) -> torch.Tensor:
        return torch.asinh(images / self.softening[None, :, None, None])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features (n, n_features) of cutouts in image units."""
        return self.backbone(self.scale(images))

    def magnitudes_scaled(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted magnitude / 30 per band, in (0, 1) (sigmoid: the paper's saturating output): the
        Kron magnitudes first, then those of each fixed aperture."""
        return torch.sigmoid(self.magnitude_head(features))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(features), dim=1)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("This network has no classifier (a pretext run).")
        return self.classifier(features)


# ============================================================================ augmentations
def random_rotate_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each cutout rotated by a random multiple of 90 degrees and flipped with probability 1/2."""
    k = torch.randint(0, 4, (len(images),), generator=generator)
    flip = torch.rand(len(images), generator=generator) < 0.5
    out = images.clone()
    for turns in range(1, 4):
        chosen = (k == turns).nonzero().flatten().to(images.device)
        if chosen.numel():
            out[chosen] = torch.rot90(images[chosen], turns, dims=(2, 3))
    flipped = flip.nonzero().flatten().to(images.device)
    if flipped.numel():
        out[flipped] = torch.flip(out[flipped], dims=(3,))
    return out


def dihedral_views(images: np.ndarray, n_views: int = 8) -> list[np.ndarray]:
    """The first ``n_views`` (1-8) of a cutout array's (n, bands, h, w) eight orientations: the four
    rotations by 90 degrees, then the four of the mirror image. The first is the cutout itself."""
    if not 1 <= n_views <= 8:
        raise ValueError(f"n_views must be between 1 and 8; got {n_views}.")
    views = [np.rot90(images, turns, axes=(2, 3)) for turns in range(4)]
    mirrored = np.flip(images, axis=3)
    views += [np.rot90(mirrored, turns, axes=(2, 3)) for turns in range(4)]
    return [np.ascontiguousarray(view) for view in views[:n_views]]


def _gaussian_kernel(sigma: float, device) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Convolve every band with a Gaussian of ``sigma`` pixels (a wider PSF, flux conserved)."""
    if sigma <= 0:
        return images
    kernel = _gaussian_kernel(sigma, images.device)
    n, b, h, w = images.shape
    flat = images.reshape(n * b, 1, h, w)
    pad = kernel.numel() // 2
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1))
    return flat.reshape(n, b, h, w)


def augment(images: torch.Tensor, sky_sigma: torch.Tensor, config: SSLConfig,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """A random astronomical view of each cutout: rotation / flip, a shift of up to
    ``augment_shift`` pixels, a PSF blur of up to ``augment_blur`` pixels (in a few steps) and
    extra sky noise of up to ``augment_noise`` x the band's sky sigma."""
    out = random_rotate_flip(images, generator)
    if config.augment_shift > 0:
        shift = torch.randint(-config.augment_shift, config.augment_shift + 1, (2,), generator=generator)
        out = torch.roll(out, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
    if config.augment_blur > 0:
        level = torch.randint(0, 3, (len(out),), generator=generator)
        for step in (1, 2):
            chosen = (level == step).nonzero().flatten().to(out.device)
            if chosen.numel():
                out[chosen] = blur(out[chosen], config.augment_blur * step / 2)
    if config.augment_noise > 0:
        amplitude = torch.rand(len(out), 1, 1, 1, generator=generator).to(out.device) * config.augment_noise
        noise = torch.randn(out.shape, generator=generator).to(out.device)
        out = out + amplitude * sky_sigma[None, :, None, None] * noise
    return out


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy of two views (n, d), unit vectors."""
    n = len(first)
    z = torch.cat([first, second])
    similarity = z @ z.T / temperature
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, target)
