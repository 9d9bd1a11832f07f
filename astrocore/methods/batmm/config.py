"""BATMM's configuration: one frozen dataclass, validated on construction, and its presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

PRESETS = ("fast", "paper")
FUSIONS = ("batmm", "early_add", "early_concat")


@dataclass(frozen=True)
class BatmmConfig:
    """Everything that defines a BATMM run.

    The spectrum encoder is a VGG-style 1-D CNN (``spectrum_channels``, one block of two
    convolutions and a max-pool each) whose feature map is cut into ``n_segments`` equal
    wavelength segments, each a token of ``encoder_dim``; a self-attention layer over the segments
    and an attention pooling give the segment weights. The image encoder is a small ResNet
    (``image_channels``, one residual block per stage) behind a squeeze-and-excitation gate over
    the bands (band weights). The fusion transformer has ``fusion_layers`` blocks of
    cross-attention (image tokens query spectral tokens), self-attention over [CLS] + all tokens,
    and a feed-forward layer, width ``fusion_dim`` and ``fusion_heads`` heads. Training follows the
    paper's transfer strategy: the two encoders are trained alone first (``encoder_epochs``), then
    the fusion on their frozen tokens (``fusion_epochs``); then a joint phase (``joint_epochs`` at
    ``joint_learning_rate``, 0 to skip) trains encoders and fusion together, end to end, so that
    the image encoder can specialise in what the spectrum lacks. ``augment_cutouts``: random
    flips and quarter turns of the cutouts in training (without them the image encoder memorises
    the 2800 training cutouts within a few epochs). Learning rates per AdamW step.
    """

    spectrum_channels: tuple[int, ...] = (8, 16, 32, 48)
    n_segments: int = 7
    spectrum_attention: bool = True
    image_channels: tuple[int, ...] = (16, 32, 48)
    encoder_dim: int = 64
    fusion: str = "batmm"  # batmm | early_add | early_concat
    fusion_dim: int = 64
    fusion_layers: int = 2
    fusion_heads: int = 4
    cross_attention: bool = True
    modality_embedding: bool = True
    missing_modality_rate: float = 0.1  # chance per star and epoch that a modality is replaced by its learned token
    dropout: float = 0.1
    augment_cutouts: bool = True  # random flips / quarter turns of the cutouts in training
    encoder_epochs: int = 20
    fusion_epochs: int = 20
    joint_epochs: int = 0  # 0 = the paper's transfer strategy alone
    batch_size: int = 64
    learning_rate: float = 2e-3
    fusion_learning_rate: float = 1e-3
    joint_learning_rate: float = 2e-4
    weight_decay: float = 1e-2
    val_fraction: float = 0.2
    test_fraction: float = 0.1
    patience: int | None = 6
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        for name in ("spectrum_channels", "image_channels"):
            value = tuple(int(v) for v in getattr(self, name))
            object.__setattr__(self, name, value)
            if not value or min(value) < 1:
                raise ValueError(f"{name} must be a non-empty list of positive channel counts; got {value}.")
        if len(self.spectrum_channels) > 6:
            raise ValueError(f"spectrum_channels allows at most 6 blocks (3522 pixels pooled by 2 each); "
                             f"got {len(self.spectrum_channels)}.")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}; got {self.fusion!r}.")
        if self.n_segments < 1:
            raise ValueError(f"n_segments must be at least 1; got {self.n_segments}.")
        for name in ("encoder_dim", "fusion_dim", "fusion_layers", "fusion_heads", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}.")
        if self.fusion_dim % self.fusion_heads:
            raise ValueError(f"fusion_dim ({self.fusion_dim}) must be divisible by fusion_heads ({self.fusion_heads}).")
        for name in ("encoder_epochs", "fusion_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}.")
        if int(self.joint_epochs) < 0:
            raise ValueError(f"joint_epochs must be 0 or more; got {self.joint_epochs}.")
        if not 0.0 <= self.missing_modality_rate < 0.5:
            raise ValueError(f"missing_modality_rate must be in [0, 0.5); got {self.missing_modality_rate}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}.")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 0.9):
            raise ValueError(f"val_fraction ({self.val_fraction}) and test_fraction ({self.test_fraction}) must be "
                             f"in (0, 1) and leave at least 10 % for training.")
        if self.learning_rate <= 0 or self.fusion_learning_rate <= 0 or self.joint_learning_rate <= 0:
            raise ValueError("learning rates must be positive.")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> "BatmmConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def preset(cls, name: str = "fast", **overrides) -> "BatmmConfig":
        """``fast``: minutes on 2 CPU cores. ``paper``: Wei et al. (2023) sizes (512-d tokens,
        8 fusion layers x 8 heads, VGG-16-like widths), for a GPU."""
        presets = {
            "fast": {},
            "paper": dict(spectrum_channels=(64, 128, 256, 512, 512), image_channels=(64, 128, 256, 512),
                          encoder_dim=512, fusion_dim=512, fusion_layers=8, fusion_heads=8,
                          encoder_epochs=50, fusion_epochs=50, batch_size=64, learning_rate=1e-4,
                          fusion_learning_rate=1e-4, patience=10),
        }
        if name not in presets:
            raise ValueError(f"Unknown preset {name!r}; choose from {sorted(presets)}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"Unknown configuration field(s) {', '.join(unknown)}; valid fields: "
                             f"{', '.join(sorted(known))}.")
        return cls(**{**presets[name], **overrides})
