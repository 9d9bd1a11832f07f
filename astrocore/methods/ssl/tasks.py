"""What :func:`astrocore.training.train` optimises for the SSL method: the pretext task (magnitudes,
contrastive or both), a classifier on cutouts (scratch / fine-tuning) and a head on fixed features
(frozen schemes and the first phase of fine-tuning)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .model import MAGNITUDE_SCALE, CutoutNet, augment, nt_xent, random_rotate_flip


class PretextTask:
    """Magnitudes (MSE of magnitude / 30, reported in mag^2 and as MAE in mag), contrastive (NT-Xent
    between two augmented views) or both (their sum, the contrastive term weighted)."""

    monitor = "val_loss"

    def __init__(self, net: CutoutNet, objective: str, sky_sigma: torch.Tensor, learning_rate: float,
                 weight_decay: float, contrastive_weight: float = 1.0):
        self.net, self.objective = net, objective
        self.sky_sigma = sky_sigma
        self.contrastive_weight = contrastive_weight
        self.modules = {"net": net}
        trained = [p for name, p in net.named_parameters() if not name.startswith("classifier")]
        self.optimizers = {"net": torch.optim.AdamW(trained, lr=learning_rate, weight_decay=weight_decay)}

    def _losses(self, batch: dict, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        images, losses = batch["images"], {}
        sky = self.sky_sigma.to(images.device)
        if self.objective in ("magnitudes", "both"):
            view = random_rotate_flip(images, generator)
            predicted = self.net.magnitudes_scaled(self.net.features(view))
            squared = (predicted - batch["targets"]) ** 2 * MAGNITUDE_SCALE ** 2
            losses["magnitude_mse"] = squared.mean()
            losses["mae_mag"] = ((predicted - batch["targets"]).abs() * MAGNITUDE_SCALE).mean().detach()
        if self.objective in ("contrastive", "both"):
            config = self.net.config
            first = self.net.project(self.net.features(augment(images, sky, config, generator)))
            second = self.net.project(self.net.features(augment(images, sky, config, generator)))
            losses["contrastive"] = nt_xent(first, second, config.temperature)
        losses["loss"] = losses.get("magnitude_mse", 0.0) + self.contrastive_weight * losses.get("contrastive", 0.0)
        return losses

    def training_step(self, batch: dict, epoch: int) -> dict[str, float]:
        losses = self._losses(batch, None)  # torch's generator, reseeded by the loop every epoch
        self.optimizers["net"].zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizers["net"].step()
        return {key: float(value.detach()) for key, value in losses.items()}

    def validation_step(self, batch: dict) -> dict[str, float]:
        # Fixed views: the same validation loss every epoch.
        losses = self._losses(batch, torch.Generator().manual_seed(5))
        return {key: float(torch.as_tensor(value).detach()) for key, value in losses.items()}


# Classifiers keep the epoch of best validation accuracy, not of least validation loss: a net
# trained on 100 labels grows overconfident, its validation loss rises while its accuracy still
# climbs (measured: scratch, seed 0, kept epoch 1 at 0.63 against 0.82 at the end).
CLASSIFIER_MONITOR = "val_error"


class ClassifierTask:
    """Cross entropy of the classifier on cutouts (rotations and flips as augmentation); every
    parameter of the backbone and the classifier is trained at ``learning_rate``."""

    monitor = CLASSIFIER_MONITOR

    def __init__(self, net: CutoutNet, learning_rate: float, weight_decay: float):
        self.net = net
        self.modules = {"net": net}
        trained = list(net.backbone.parameters()) + list(net.classifier.parameters())
        self.optimizers = {"net": torch.optim.AdamW(trained, lr=learning_rate, weight_decay=weight_decay)}

    def training_step(self, batch: dict, epoch: int) -> dict[str, float]:
        view = random_rotate_flip(batch["images"])
        logits = self.net.logits(self.net.features(view))
        loss = F.cross_entropy(logits, batch["target"])
        self.optimizers["net"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["net"].step()
        return {"loss": float(loss.detach()), "accuracy": float((logits.argmax(1) == batch["target"]).float().mean())}

    def validation_step(self, batch: dict) -> dict[str, float]:
        logits = self.net.logits(self.net.features(batch["images"]))
        accuracy = float((logits.argmax(1) == batch["target"]).float().mean())
        return {"loss": float(F.cross_entropy(logits, batch["target"])), "accuracy": accuracy, "error": 1 - accuracy}


class HeadTask:
    """A head (the paper's dense + dropout) on fixed features: cross entropy for classes
    (``target`` integer) or the magnitude MSE (``targets`` = magnitude / 30, sigmoid output)."""

    def __init__(self, head: nn.Module, learning_rate: float, weight_decay: float, kind: str = "classes"):
        self.head, self.kind = head, kind
        self.monitor = CLASSIFIER_MONITOR if kind == "classes" else "val_loss"
        self.modules = {"head": head}
        self.optimizers = {"head": torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)}

    def _loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        output = self.head(batch["features"])
        if self.kind == "classes":
            loss = F.cross_entropy(output, batch["target"])
            accuracy = float((output.argmax(1) == batch["target"]).float().mean())
            return loss, {"accuracy": accuracy, "error": 1 - accuracy}
        predicted = torch.sigmoid(output)
        loss = ((predicted - batch["targets"]) ** 2).mean() * MAGNITUDE_SCALE ** 2
        return loss, {"mae_mag": float((predicted - batch["targets"]).abs().mean().detach() * MAGNITUDE_SCALE)}

    def training_step(self, batch: dict, epoch: int) -> dict[str, float]:
        loss, metrics = self._loss(batch)
        self.optimizers["head"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["head"].step()
        return {"loss": float(loss.detach()), **metrics}

    def validation_step(self, batch: dict) -> dict[str, float]:
        loss, metrics = self._loss(batch)
        return {"loss": float(loss), **metrics}
