"""Configuration of self-supervised pre-training on cutouts: one frozen dataclass and its presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ...training import LR_SCHEDULES

STAGES = ("pretext", "downstream")
# What the pretext stage learns from unlabelled cutouts: the paper's magnitudes (regressed from the
# image), a SimCLR-style contrastive objective with astronomical augmentations, or both summed.
PRETEXT_OBJECTIVES = ("magnitudes", "contrastive", "both")
# How the downstream classifier is trained (Martinazzo et al. 2020 section 4): from random weights,
# a head on frozen pre-trained features, fine-tuning (head first, then every layer at a low rate),
# a head on frozen contrastive features, or ImageNet features (only when the weights are on disk).
SCHEMES = ("scratch", "frozen_pretext", "finetune_pretext", "frozen_contrastive", "imagenet")
# small_vgg: a hand-sized VGG-style net (fast preset); the others are built by timm with in_chans =
# the number of bands and pretrained=False (never downloaded).
BACKBONES = ("small_vgg", "vgg11_bn", "vgg16_bn", "resnet10t", "resnet18")
PRESETS = ("fast", "paper")
PRETEXT_MIN_STEPS, DOWNSTREAM_MIN_STEPS = 1200, 200  # see SSLConfig.min_steps


@dataclass(frozen=True)
class SSLConfig:
    """Everything that defines a pretext or downstream run. Validated on construction.

    Learning rates are per Adam step; temperature is the NT-Xent softmax temperature; augmentation
    sizes are in pixels (shift, PSF blur sigma) and in units of the band's sky noise (noise).
    """

    stage: str = "pretext"
    pretext: str = "magnitudes"
    scheme: str = "scratch"
    backbone: str = "small_vgg"
    width: int = 16  # small_vgg: channels of the first block (then 2x, 4x, 4x)
    head_hidden: int = 128  # the paper's head: dense -> ReLU -> dropout -> output
    dropout: float = 0.5  # the classifier head's
    # The magnitude head's dropout. 0 in both presets: dropout 0.5 in a regression head halves the
    # precision of the predicted magnitudes and, through them, of the features (measured: frozen
    # features 0.82 -> 0.87 accuracy at 100 labels on star/galaxy/quasar, the same network).
    magnitude_dropout: float = 0.0
    projection_dim: int = 64  # contrastive projection head output
    temperature: float = 0.2
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    head_learning_rate: float = 3e-3
    head_epochs: int = 30  # frozen schemes: the head's epochs; finetune: head-only epochs first
    weight_decay: float = 1e-4
    # The classifier head on frozen features (and fine-tuning's head-first phase): 100 labels and
    # a 128-wide head overfit; AdamW's usual 0.01 halves the spread over seeds (frozen magnitude
    # features at 100 labels on star/galaxy/quasar: 0.913 +- 0.033 -> 0.924 +- 0.016, 6 seeds).
    head_weight_decay: float = 1e-2
    # The head on frozen features trains on this many orientations of each labelled cutout (1-8:
    # rotations by 90 degrees and mirror images), the frozen schemes' counterpart of the
    # rotations and flips the scratch and fine-tuned networks see.
    head_views: int = 8
    augment_shift: int = 2
    augment_blur: float = 0.8
    augment_noise: float = 1.0
    contrastive_weight: float = 1.0  # pretext "both": weight of the contrastive term
    max_error: float = 0.1  # the paper's photometric cut [mag]
    # Radii [arcsec] of fixed circular apertures whose magnitudes the pretext also regresses, after
    # the Kron magnitudes (the paper's target): colours at the higher S/N of a small aperture, and
    # against the Kron magnitude a concentration index per band. The fast preset uses 0.8" and 2";
    # the paper preset none (the paper's Kron magnitudes only).
    fixed_apertures_arcsec: tuple[float, ...] = ()
    n_labels: int | None = None  # downstream: labelled training objects (None: all of the training pool)
    val_objects: int = 500  # downstream: a fixed validation set
    test_fraction: float = 0.2
    val_fraction: float = 0.1  # pretext only
    epochs: int = 10
    # Optimiser steps at least, however few the objects (None: the stage's default, below).
    # Downstream (200): the classifier on cutouts (fine-tuning's all-layers phase takes 3/4 of it),
    # since 100 labels make one batch per epoch. A pretext with the magnitude target (1200): on
    # 4,000 cutouts, 30 epochs (390 steps) gave frozen features of 0.80 accuracy at 100 labels on
    # star/galaxy/quasar, 90 epochs (1170 steps) 0.92, as 30 epochs on 12,000 cutouts do. The
    # contrastive objective alone: its epochs (not measured).
    min_steps: int | None = None
    batch_size: int = 128
    patience: int | None = None
    lr_schedule: str = "cosine"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        checks = {"stage": STAGES, "pretext": PRETEXT_OBJECTIVES, "scheme": SCHEMES, "backbone": BACKBONES,
                  "lr_schedule": LR_SCHEDULES}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        positive = ("width", "head_hidden", "projection_dim", "epochs", "batch_size", "val_objects")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if not 1 <= self.head_views <= 8:
            raise ValueError(f"head_views must be between 1 and 8; got {self.head_views}.")
        if self.head_epochs < 0 or (self.min_steps is not None and self.min_steps < 0):
            raise ValueError("head_epochs and min_steps must be >= 0.")
        for name in ("dropout", "magnitude_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}.")
        if min(self.weight_decay, self.head_weight_decay) < 0:
            raise ValueError("weight_decay and head_weight_decay must be >= 0.")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}.")
        if min(self.learning_rate, self.finetune_learning_rate, self.head_learning_rate) <= 0:
            raise ValueError("learning rates must be > 0.")
        if self.n_labels is not None and int(self.n_labels) < 2:
            raise ValueError(f"n_labels must be at least 2 (or None for all); got {self.n_labels}.")
        if not 0 < self.test_fraction < 0.9 or not 0 <= self.val_fraction < 0.5:
            raise ValueError("test_fraction must be in (0, 0.9) and val_fraction in [0, 0.5).")
        if self.max_error <= 0:
            raise ValueError(f"max_error must be > 0 mag; got {self.max_error}.")
        object.__setattr__(self, "fixed_apertures_arcsec", tuple(float(r) for r in self.fixed_apertures_arcsec))
        if any(r <= 0 for r in self.fixed_apertures_arcsec):
            raise ValueError(f"fixed_apertures_arcsec must be > 0; got {self.fixed_apertures_arcsec}.")

    @property
    def n_magnitude_sets(self) -> int:
        """How many magnitudes per band the magnitude head predicts (Kron, then each fixed aperture)."""
        return 1 + len(self.fixed_apertures_arcsec)

    @property
    def steps_at_least(self) -> int:
        """Optimiser steps a run takes at least: ``min_steps``, or the stage's default."""
        if self.min_steps is not None:
            return int(self.min_steps)
        if self.stage == "downstream":
            return DOWNSTREAM_MIN_STEPS
        return PRETEXT_MIN_STEPS if self.pretext in ("magnitudes", "both") else 0

    @property
    def uses_pretext_run(self) -> bool:
        """Whether a downstream run starts from a pre-trained run's backbone."""
        return self.stage == "downstream" and self.scheme in ("frozen_pretext", "finetune_pretext",
                                                              "frozen_contrastive")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> "SSLConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def preset(cls, name: str = "fast", **overrides) -> "SSLConfig":
        """``fast``: a small VGG-style net, minutes on 2 CPU cores (the app's default);
        ``paper``: the published VGG-16-style backbone and schedule, for a GPU."""
        presets = {
            # width 32, not 16: frozen magnitude features 0.87 -> 0.91 accuracy at 100 labels on
            # star/galaxy/quasar. max_error 1 mag, not the paper's 0.1: at r 14-19.5 the paper's cut
            # keeps 18 % of the cutouts, all bright, and the features fall back to 0.84. Fixed 0.8"
            # and 2" apertures beside the Kron magnitudes (colours at a small aperture's higher S/N,
            # a concentration index per band), with the pretext's 1200 steps at least: frozen
            # features at 100 labels (5 pretext networks on 4,000 or 12,000 cutouts) 0.87-0.93, mean
            # 0.909, against 0.895-0.898 (4 networks) for Kron magnitudes alone.
            "fast": dict(backbone="small_vgg", width=32, head_hidden=128, epochs=10, batch_size=128, max_error=1.0,
                         fixed_apertures_arcsec=(0.8, 2.0)),
            "paper": dict(backbone="vgg16_bn", head_hidden=512, epochs=100, batch_size=64, learning_rate=1e-4,
                          finetune_learning_rate=1e-5, head_epochs=10, lr_schedule="constant", patience=10),
        }
        if name not in presets:
            raise ValueError(f"Unknown preset {name!r}; choose from {sorted(presets)}.")
        return cls(**{**presets[name], **overrides})
