"""The domain-adversarial network (Ganin et al. 2016, JMLR 17, 59), read top to bottom.

    ratios (dex) -> standardise -> FeatureExtractor -> features h
    h -> LabelClassifier -> class logits (HII, PN, SNR)
    h -> GradientReversal(lambda) -> DomainClassifier -> domain logit (source 0, target 1)

The gradient-reversal layer is the identity going forward and multiplies the gradient by -lambda
going back, so one backward pass trains the domain classifier to tell the domains apart and the
feature extractor to make them indistinguishable. The source-only network is the same model
without the domain head.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import DannConfig

N_CLASSES = 3


class GradientReversal(torch.autograd.Function):
    """y = x forward; dL/dx = -lambda dL/dy backward."""

    @staticmethod
    def forward(ctx, x, strength):
        ctx.strength = float(strength)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.strength * grad_output, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    return GradientReversal.apply(x, strength)


def lambda_at(progress: float, config: DannConfig) -> float:
    """The gradient-reversal strength at training progress ``progress`` (0..1)."""
    if config.lambda_schedule == "constant":
        return config.lambda_max
    return config.lambda_max * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


def mlp(sizes: list[int], dropout: float = 0.0, last_activation: bool = True) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class DannNetwork(nn.Module):
    """Feature extractor + label classifier (+ domain classifier unless mode is source_only/oracle).

    The input standardisation (mean and std of the training features, in dex) is stored as buffers
    so a saved run needs nothing else.
    """

    def __init__(self, config: DannConfig):
        super().__init__()
        self.config = config
        n_in = len(config.features)
        self.register_buffer("feature_mean", torch.zeros(n_in))
        self.register_buffer("feature_std", torch.ones(n_in))
        self.extractor = mlp([n_in, *config.hidden, config.feature_dim], config.dropout)
        self.classifier = nn.Linear(config.feature_dim, N_CLASSES)
        self.domain_head = (mlp([config.feature_dim, *config.domain_hidden, 1], last_activation=False)
                            if config.mode == "dann" else None)

    def standardise(self, ratios: torch.Tensor) -> torch.Tensor:
        return (ratios - self.feature_mean) / self.feature_std

    def features(self, ratios: torch.Tensor) -> torch.Tensor:
        """The representation h (n, feature_dim) of log ratios (n, n_features) in dex."""
        return self.extractor(self.standardise(ratios))

    def forward(self, ratios: torch.Tensor) -> torch.Tensor:
        """Class logits (n, 3)."""
        return self.classifier(self.features(ratios))

    def domain_logits(self, features: torch.Tensor, strength: float) -> torch.Tensor:
        """Logit of "target" for features h, through the gradient-reversal layer."""
        if self.domain_head is None:
            raise RuntimeError("This network has no domain head (mode source_only / oracle).")
        return self.domain_head(reverse_gradient(features, strength)).squeeze(-1)
