"""Disentangling stellar spectra from their conditional parameters (GANDALF; Santoveña et al. 2024).

An autoencoder E(x, cp) -> z, D(z, cp) -> x is trained to reconstruct spectra x while adversaries
try to predict the conditional parameters cp (Teff, logg, ...) from the latent z. The encoder is
rewarded when they fail, so z keeps what cp does not explain (the chemistry) and the decoder can
re-render a star at any cp: "slide Teff and logg through the decoder".

Modes:
  noat   no adversary (lambda = 0): a conditional autoencoder.
  at     one adversary for all conditional parameters jointly.
  mdat   one adversary per conditional parameter, each with its own lambda.

Recipes (selectable, so the paper can be compared with what works):
  paper-faithful  min-max inputs, sigmoid latent and output, binned classifier adversaries,
                  loss MSE - sum_i lambda_i CE_i, one adversary step per batch, lambda 0.001.
  improved        standardised inputs, a small batch-normalised latent, regression adversaries on
                  the continuous parameters, a bounded adversarial term (no reward for making an
                  adversary worse than a constant guess), several adversary steps per batch and a
                  lambda warm-up. See DisentanglerConfig.fast / .paper.

Reading order: config -> modules -> the training task -> fit -> DisentanglerRun (inference).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..data.dataset import DataError, Dataset
from ..runs import RunRecord, load_arrays, new_run_id, runs_dir, save_arrays, write_progress
from ..training import (LR_SCHEDULES, LoopSettings, TrainingCancelled, count_batches, load_modules,
                        pick_device, save_modules, seed_everything, train)

MODES = ("noat", "at", "mdat")
CP_FEATURES = ("linear", "fourier")
CONDITIONINGS = ("concat", "film", "film-encoder")
ENCODERS = ("mlp", "cp-polynomial")


# ============================================================================ configuration
@dataclass(frozen=True)
class DisentanglerConfig:
    """Everything that defines a disentangling run. Validated on construction.

    Sizes are in units of neurons; learning rates per step; lambdas are dimensionless weights of
    the adversarial term relative to the reconstruction MSE of the scaled spectra.
    """

    mode: str = "mdat"
    conditional: tuple[str, ...] = ("teff", "logg")
    latent_dim: int = 25
    encoder_hidden: tuple[int, ...] = (512, 256)
    decoder_hidden: tuple[int, ...] = (256, 512)
    adversary_hidden: tuple[int, ...] = (64, 32)
    # Between the encoder's and decoder's layers: leaky_relu (paper) | silu, whose smooth response
    # lets the decoder emulate spectra of unseen chemistries better.
    activation: str = "leaky_relu"
    latent_activation: str = "sigmoid"  # sigmoid (paper) | batchnorm | none
    scaling: str = "minmax"  # minmax (paper, with sigmoid output) | standard (per-pixel mean, global std; linear output)
    adversary: str = "classifier"  # classifier: binned cp (paper) | regression: continuous cp
    n_bins: int = 10
    objective: str = "paper"  # paper: recon - sum lambda*L_adv | bounded: recon + sum lambda*relu(L_chance - L_adv)
    lambdas: tuple[float, ...] = (0.001,)  # one value for all, or one per conditional parameter
    lambda_warmup_epochs: int = 0
    adversary_steps: int = 1
    # Twin consistency (an addition to the paper): where the training set renders the same chemical
    # fingerprint at several Teff/logg, decode each star's latent at a twin's parameters to match
    # the twin's spectrum, and match the two latents. Weight relative to the reconstruction MSE;
    # 0 disables it (and it is inactive for data without a fingerprint column).
    twin_weight: float = 0.0
    # Weight of the latent-match half of the twin term, as a multiple of twin_weight. With the MLP
    # encoder a standardised probe sees a within-fingerprint residual of 1 % of z's variance, which
    # took 30x to remove; the cp-polynomial encoder needs only 1x (without it, k-NN reads logg).
    twin_latent_factor: float = 1.0
    learning_rate: float = 1e-3
    adversary_learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # constant (paper) | cosine: decay to 1 % over the run
    # How the networks see the conditional parameters (an addition to the paper). linear: the
    # standardised values (paper). fourier: also sin/cos(k pi t), k = 1..cp_frequencies, of each
    # parameter's position t in its training range. Spectra respond to Teff and logg far from
    # linearly (molecular bands switch on, wings grow); these features let the decoder's first
    # layer build that response instead of its depth, which on the APOGEE-like grid cut a label
    # decoder's held-out error 3.7x at the same size and epochs.
    cp_features: str = "linear"
    cp_frequencies: int = 8
    # Where the conditional parameters enter the encoder and decoder (an addition to the paper).
    # concat: beside the flux or latent at the input (paper). film: there too, and a small network
    # of cp also scales and shifts every hidden layer (feature-wise linear modulation, Perez et al.
    # 2018) of both networks; film-encoder: of the encoder only. A line's response to an abundance
    # grows or fades with Teff and logg, a product of the two that input-only networks must build
    # from depth; reading the chemistry out of a spectrum is where this helps mdat most.
    conditioning: str = "concat"
    # How the encoder reads the spectrum (an addition to the paper). mlp: the paper's network of
    # (flux, cp). cp-polynomial: z is linear in the spectrum's leading principal components (of the
    # training spectra), with weights that are quadratic polynomials of the standardised cp
    # (:class:`PolynomialReader`). Reading an abundance means dividing a line's depth by a Teff- and
    # logg-dependent sensitivity; a ridge regression of this form reads every abundance of unseen
    # chemistries on the APOGEE-like grid at R^2 0.85-1.00, where a supervised MLP of the
    # encoder's sizes reads N, Al, Mn and Ni at 0.75 or less from the same 84 chemistries.
    encoder: str = "mlp"
    encoder_components: int = 200
    # Gaussian noise (continuum-normalised flux units; 0.01 is S/N 100) added to the spectra the
    # encoder sees in training, not to the reconstruction target. A model trained on noise-free
    # grids learns to read features far below any real spectrum's noise (the cp-polynomial encoder
    # most of all); train with the noise of the spectra it will encode. 0 disables it.
    input_noise: float = 0.0
    # After the adversarial training (an addition to the paper): freeze the encoder and refit the
    # decoder alone to the training spectra from their now fixed latents, for this many epochs
    # (cosine-decayed rate). The latent, and so every probe result, is unchanged; the decoder no
    # longer shares its updates with the adversarial and twin terms. 0 disables it.
    decoder_refit_epochs: int = 0
    # Twin codes (an addition to the paper; active only with the cp-polynomial encoder, the twin
    # term and twins in the data, and the run's metrics say whether it ran):
    # after the adversarial training, give each training chemistry one latent, optimised for this
    # many steps through the frozen decoder to reconstruct all of that chemistry's spectra, then
    # refit the encoder's linear read-out (ridge, closed form) to map every spectrum to its
    # chemistry's code. A code is the same at every Teff and logg, so the encoder learns to read
    # nothing but the chemistry; on the APOGEE-like grid the encoder trained with the adversaries
    # leaves 2.5x of reconstruction error that the best per-chemistry latent does not. Runs before
    # the decoder refit. 0 disables it.
    twin_code_steps: int = 0
    epochs: int = 30
    batch_size: int = 128
    patience: int | None = None
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {self.mode!r}.")
        object.__setattr__(self, "conditional", tuple(self.conditional))
        object.__setattr__(self, "lambdas", tuple(float(v) for v in np.atleast_1d(self.lambdas)))
        for name in ("encoder_hidden", "decoder_hidden", "adversary_hidden"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.conditional:
            raise ValueError("At least one conditional parameter is needed (e.g. teff,logg).")
        if len(self.lambdas) not in (1, len(self.conditional)):
            raise ValueError(
                f"lambdas has {len(self.lambdas)} values; give one, or one per conditional parameter "
                f"({len(self.conditional)}: {', '.join(self.conditional)})."
            )
        checks = {
            "activation": tuple(ACTIVATIONS),
            "latent_activation": ("sigmoid", "batchnorm", "none"),
            "scaling": ("minmax", "standard"),
            "adversary": ("classifier", "regression"),
            "objective": ("paper", "bounded"),
            "lr_schedule": LR_SCHEDULES,
            "cp_features": CP_FEATURES,
            "conditioning": CONDITIONINGS,
            "encoder": ENCODERS,
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        if self.twin_weight < 0 or self.twin_latent_factor < 0:
            raise ValueError("twin_weight and twin_latent_factor must be >= 0.")
        if self.cp_frequencies < 1 or self.encoder_components < 1:
            raise ValueError("cp_frequencies and encoder_components must be >= 1.")
        if self.encoder != "mlp" and self.conditioning != "concat":
            raise ValueError(f"conditioning={self.conditioning!r} modulates an MLP encoder; "
                             f"encoder={self.encoder!r} has its own cp dependence (use conditioning='concat').")
        if self.decoder_refit_epochs < 0 or self.twin_code_steps < 0:
            raise ValueError("decoder_refit_epochs and twin_code_steps must be >= 0.")
        if self.input_noise < 0:
            raise ValueError("input_noise must be >= 0 (a flux standard deviation).")
        if self.latent_dim < 1 or self.n_bins < 2 or self.adversary_steps < 1 or self.epochs < 1:
            raise ValueError("latent_dim, epochs and adversary_steps must be >= 1 and n_bins >= 2.")
        if not 0 < self.test_fraction < 1 or not 0 <= self.val_fraction < 1:
            raise ValueError("test_fraction must be in (0, 1) and val_fraction in [0, 1).")

    def lambda_for(self, index: int) -> float:
        return self.lambdas[0] if len(self.lambdas) == 1 else self.lambdas[index]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> "DisentanglerConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def preset(cls, name: str = "fast", **overrides) -> "DisentanglerConfig":
        """Named presets: ``fast`` (minutes on 2 CPU cores, improved recipe), ``paper`` (the
        published sizes and recipe, for a GPU) and ``paper-fast`` (the published recipe with the
        fast schedule, for like-for-like comparisons)."""
        presets = {
            "fast": dict(
                latent_dim=12, latent_activation="batchnorm", scaling="standard",
                adversary="regression", objective="bounded", lambdas=(0.1,),
                adversary_hidden=(128, 64), adversary_learning_rate=2e-3,
                lambda_warmup_epochs=3, adversary_steps=5, twin_weight=1.0, twin_latent_factor=1.0, epochs=20,
                decoder_refit_epochs=5, twin_code_steps=200, batch_size=128, test_fraction=0.3,
                encoder="cp-polynomial", cp_features="fourier", activation="silu",
            ),
            "paper": dict(epochs=200, batch_size=64),
            "paper-fast": dict(epochs=25, batch_size=128),
        }
        if name not in presets:
            raise ValueError(f"Unknown preset {name!r}; choose from {sorted(presets)}.")
        return cls(**{**presets[name], **overrides})


# ============================================================================ modules
ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "silu": nn.SiLU}


def mlp(sizes: list[int], activation: str = "leaky_relu") -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` (a key of ACTIVATIONS) between them."""
    layers: list[nn.Module] = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class FiLMMLP(nn.Module):
    """An MLP whose last ``n_conditions`` input columns also modulate every hidden layer:
    h <- h * (1 + gamma(c)) + beta(c), after the activation (FiLM; Perez et al. 2018).

    The modulation network starts at zero, so an untrained FiLMMLP equals :func:`mlp` of the same
    sizes. ``sizes`` include the conditions in the input width, as for :func:`mlp`.
    """

    def __init__(self, sizes: list[int], n_conditions: int, activation: str = "leaky_relu",
                 modulation_hidden: int = 64):
        super().__init__()
        self.n_conditions = n_conditions
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.activation = ACTIVATIONS[activation]()
        self.widths = list(sizes[1:-1])
        self.modulation = nn.Sequential(
            nn.Linear(n_conditions, modulation_hidden), ACTIVATIONS[activation](),
            nn.Linear(modulation_hidden, 2 * sum(self.widths)),
        )
        nn.init.zeros_(self.modulation[-1].weight)
        nn.init.zeros_(self.modulation[-1].bias)

    def hidden(self, inputs: torch.Tensor) -> torch.Tensor:
        """Activations of the last hidden layer (after its modulation)."""
        # (scale, shift) for each hidden layer in turn.
        pieces = self.modulation(inputs[:, -self.n_conditions:]).split(
            [width for width in self.widths for _ in ("scale", "shift")], dim=1)
        features = inputs
        for index, layer in enumerate(self.layers[:-1]):
            scale, shift = pieces[2 * index], pieces[2 * index + 1]
            features = self.activation(layer(features)) * (1 + scale) + shift
        return features

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers[-1](self.hidden(inputs))


def conditioned_mlp(sizes: list[int], n_conditions: int, film: bool, activation: str) -> nn.Module:
    """The encoder's or decoder's network: the conditions are the last ``n_conditions`` inputs,
    which also modulate every hidden layer when ``film``."""
    if film:
        return FiLMMLP(sizes, n_conditions, activation)
    return mlp(sizes, activation)


class PolynomialReader(nn.Module):
    """A linear read-out of the spectrum whose weights are polynomials of the conditions:
    z = sum_k phi_k(c) W_k h + V phi(c), with h the spectrum's projection on its leading principal
    components (each of unit variance over the training spectra) and phi(c) = [1, c_i, c_i c_j]
    (i <= j) the monomials of the standardised conditions c up to degree 2.

    The input is laid out as for the MLP encoder: flux in network units, then the conditions as
    the model feeds them (the first ``n_conditions`` columns are their standardised values; any
    Fourier features after them are not used). The projection is a buffer set from the training
    spectra (:meth:`set_components`), saved with the weights and not trained.
    """

    def __init__(self, n_pixels: int, n_conditions: int, n_components: int, n_out: int):
        super().__init__()
        self.n_pixels, self.n_conditions = n_pixels, n_conditions
        pairs = [(i, j) for i in range(n_conditions) for j in range(i, n_conditions)]
        self.register_buffer("pair_index", torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2))
        n_terms = 1 + n_conditions + len(pairs)
        self.register_buffer("centre", torch.zeros(n_pixels))
        self.register_buffer("components", torch.zeros(n_components, n_pixels))
        self.readout = nn.Linear(n_components * n_terms + n_terms - 1, n_out)

    @torch.no_grad()
    def set_components(self, training_flux: torch.Tensor, max_rows: int = 8000, seed: int = 0) -> None:
        """Principal axes of ``training_flux`` (n, n_pixels; network units), scaled so that each
        projection has unit variance. Uses at most ``max_rows`` spectra (a random subset)."""
        generator = torch.Generator().manual_seed(seed)
        if len(training_flux) > max_rows:
            training_flux = training_flux[torch.randperm(len(training_flux), generator=generator)[:max_rows]]
        centre = training_flux.mean(dim=0)
        n_components = min(self.components.shape[0], *training_flux.shape)
        # A randomised SVD (Halko et al. 2011): seconds where the exact one takes minutes.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, singular, axes = torch.svd_lowrank(training_flux - centre,
                                                  q=min(n_components + 10, *training_flux.shape), niter=4)
        spread = (singular[:n_components] / max(len(training_flux) - 1, 1) ** 0.5).clamp_min(1e-8)
        self.centre.copy_(centre)
        self.components.zero_()
        self.components[:n_components] = axes[:, :n_components].T / spread[:, None]

    def monomials(self, conditions: torch.Tensor) -> torch.Tensor:
        """phi(c): (n, 1 + n_conditions + n_pairs), starting with the constant 1."""
        products = conditions[:, self.pair_index[:, 0]] * conditions[:, self.pair_index[:, 1]]
        return torch.cat([torch.ones_like(conditions[:, :1]), conditions, products], dim=1)

    def hidden(self, inputs: torch.Tensor) -> torch.Tensor:
        """The spectrum's principal-component projection h (n, n_components)."""
        return (inputs[:, :self.n_pixels] - self.centre) @ self.components.T

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """What the linear read-out sees: h_k phi_m(c) for every component and monomial, then
        phi(c) without its constant (n, n_components n_terms + n_terms - 1)."""
        projection = self.hidden(inputs)
        terms = self.monomials(inputs[:, self.n_pixels:self.n_pixels + self.n_conditions])
        products = (projection[:, :, None] * terms[:, None, :]).flatten(1)
        return torch.cat([products, terms[:, 1:]], dim=1)

    @torch.no_grad()
    def all_features(self, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """:meth:`features` of many inputs, in batches, as float64 (for a linear fit of the read-out)."""
        return torch.cat([self.features(inputs[start:start + batch_size]).double()
                          for start in range(0, len(inputs), batch_size)])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(inputs))


def hidden_features(network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """A network's last hidden layer for ``inputs``: everything but its final linear map (for a
    :class:`PolynomialReader`, the principal-component projection)."""
    return network.hidden(inputs) if isinstance(network, (FiLMMLP, PolynomialReader)) else network[:-1](inputs)


def fourier_features(fraction: torch.Tensor, n_frequencies: int) -> torch.Tensor:
    """sin(k pi t) for k = 1..n_frequencies, then the cosines, of each column t of ``fraction``
    (n, n_columns): shape (n, 2 n_columns n_frequencies). ``t`` is a position in a range, 0 to 1."""
    angles = torch.pi * fraction[:, :, None] * torch.arange(
        1, n_frequencies + 1, device=fraction.device, dtype=fraction.dtype)
    return torch.cat([torch.sin(angles).flatten(1), torch.cos(angles).flatten(1)], dim=1)


class Disentangler(nn.Module):
    """Encoder, decoder and adversaries, plus the buffers that map physical units to the network's.

    ``encode``/``decode`` take flux and conditional parameters in physical units (continuum
    normalised flux; K, dex) and handle all scaling internally.
    """

    def __init__(self, n_pixels: int, config: DisentanglerConfig):
        super().__init__()
        self.config = config
        n_cp = len(config.conditional)
        n_cp_inputs = n_cp * (1 + 2 * config.cp_frequencies if config.cp_features == "fourier" else 1)
        encoder_film, decoder_film = config.conditioning != "concat", config.conditioning == "film"
        if config.encoder == "cp-polynomial":
            self.encoder = PolynomialReader(n_pixels, n_cp, config.encoder_components, config.latent_dim)
        else:
            self.encoder = conditioned_mlp([n_pixels + n_cp_inputs, *config.encoder_hidden, config.latent_dim],
                                           n_cp_inputs, encoder_film, config.activation)
        self.latent_norm = (
            nn.BatchNorm1d(config.latent_dim, affine=False) if config.latent_activation == "batchnorm" else None
        )
        self.decoder = conditioned_mlp([config.latent_dim + n_cp_inputs, *config.decoder_hidden, n_pixels],
                                       n_cp_inputs, decoder_film, config.activation)
        self.adversaries = nn.ModuleList(
            mlp([config.latent_dim, *config.adversary_hidden, n_out]) for n_out in self.adversary_outputs()
        )
        # Normalisation, training ranges and bins; saved with the weights.
        self.register_buffer("wavelength", torch.zeros(n_pixels, dtype=torch.float64))
        self.register_buffer("flux_offset", torch.zeros(n_pixels))
        self.register_buffer("flux_scale", torch.ones(n_pixels))
        self.register_buffer("cp_mean", torch.zeros(n_cp))
        self.register_buffer("cp_std", torch.ones(n_cp))
        self.register_buffer("cp_min", torch.zeros(n_cp))
        self.register_buffer("cp_max", torch.ones(n_cp))
        self.register_buffer("chance_loss", torch.ones(len(self.adversary_outputs())))

    def adversary_outputs(self) -> list[int]:
        """Output size of each adversary for this mode and adversary type."""
        config, n_cp = self.config, len(self.config.conditional)
        if config.mode == "noat":
            return []
        per_param = config.n_bins if config.adversary == "classifier" else 1
        if config.mode == "mdat":
            return [per_param] * n_cp
        return [config.n_bins**n_cp if config.adversary == "classifier" else n_cp]

    # -- scaling between physical units and network units
    def scale_flux(self, flux: torch.Tensor) -> torch.Tensor:
        return (flux - self.flux_offset) / self.flux_scale

    def unscale_flux(self, scaled: torch.Tensor) -> torch.Tensor:
        return scaled * self.flux_scale + self.flux_offset

    def scale_cp(self, cp: torch.Tensor) -> torch.Tensor:
        return (cp - self.cp_mean) / self.cp_std

    def cp_inputs(self, cp: torch.Tensor) -> torch.Tensor:
        """The conditional parameters as the encoder and decoder see them (``cp_features``)."""
        scaled = self.scale_cp(cp)
        if self.config.cp_features == "linear":
            return scaled
        return torch.cat([scaled, fourier_features(self.cp_fraction(cp), self.config.cp_frequencies)], dim=1)

    def cp_fraction(self, cp: torch.Tensor) -> torch.Tensor:
        """Position of each conditional parameter in its training range: 0 to 1 inside it."""
        return (cp - self.cp_min) / (self.cp_max - self.cp_min).clamp_min(1e-12)

    def cp_bins(self, cp: torch.Tensor) -> torch.Tensor:
        """Bin index (0..n_bins-1) of each conditional parameter over its training range."""
        return (self.cp_fraction(cp) * self.config.n_bins).long().clamp(0, self.config.n_bins - 1)

    # -- the autoencoder on network units (scaled flux; cp as given by cp_inputs)
    def encode_scaled(self, scaled_flux: torch.Tensor, cp_inputs: torch.Tensor) -> torch.Tensor:
        latent = self.encoder(torch.cat([scaled_flux, cp_inputs], dim=1))
        if self.config.latent_activation == "sigmoid":
            return torch.sigmoid(latent)
        if self.latent_norm is not None:
            return self.latent_norm(latent)
        return latent

    def decode_scaled(self, latent: torch.Tensor, cp_inputs: torch.Tensor) -> torch.Tensor:
        output = self.decoder(torch.cat([latent, cp_inputs], dim=1))
        return torch.sigmoid(output) if self.config.scaling == "minmax" else output

    def with_input_noise(self, scaled_flux: torch.Tensor) -> torch.Tensor:
        """``scaled_flux`` plus the configured training input noise (converted to network units)."""
        if self.config.input_noise <= 0:
            return scaled_flux
        return scaled_flux + torch.randn_like(scaled_flux) * (self.config.input_noise / self.flux_scale)

    # -- physical units in and out
    def encode(self, flux: torch.Tensor, cp: torch.Tensor) -> torch.Tensor:
        return self.encode_scaled(self.scale_flux(flux), self.cp_inputs(cp))

    def decode(self, latent: torch.Tensor, cp: torch.Tensor) -> torch.Tensor:
        return self.unscale_flux(self.decode_scaled(latent, self.cp_inputs(cp)))

    # -- adversaries
    def adversary_losses(self, latent: torch.Tensor, cp: torch.Tensor) -> list[torch.Tensor]:
        """One loss per adversary: cross-entropy on bins, or MSE on standardised cp."""
        config = self.config
        if config.mode == "noat":
            return []
        if config.adversary == "regression":
            target = self.scale_cp(cp)
            if config.mode == "mdat":
                return [F.mse_loss(adv(latent)[:, 0], target[:, i]) for i, adv in enumerate(self.adversaries)]
            return [F.mse_loss(self.adversaries[0](latent), target)]
        bins = self.cp_bins(cp)
        if config.mode == "mdat":
            return [F.cross_entropy(adv(latent), bins[:, i]) for i, adv in enumerate(self.adversaries)]
        joint = torch.zeros_like(bins[:, 0])
        for i in range(bins.shape[1]):
            joint = joint * config.n_bins + bins[:, i]
        return [F.cross_entropy(self.adversaries[0](latent), joint)]


# ============================================================================ training task
class DisentanglerTask:
    """The per-batch optimisation of a :class:`Disentangler` for :func:`astrocore.training.train`."""

    monitor = "val_objective"

    def __init__(self, model: Disentangler, twins: "TwinSampler | None" = None):
        self.model = model
        self.twins = twins if model.config.twin_weight > 0 else None
        config = model.config
        self.modules = {"model": model}
        autoencoder = [p for name, p in model.named_parameters() if not name.startswith("adversaries")]
        self.optimizers = {"autoencoder": torch.optim.Adam(autoencoder, lr=config.learning_rate)}
        if model.adversaries:
            self.optimizers["adversary"] = torch.optim.Adam(
                model.adversaries.parameters(), lr=config.adversary_learning_rate
            )

    def _lambda_scale(self, epoch: int) -> float:
        warmup = self.model.config.lambda_warmup_epochs
        return 1.0 if warmup <= 0 else min(1.0, (epoch + 1) / warmup)

    def _adversarial_term(self, losses: list[torch.Tensor], scale: float) -> torch.Tensor:
        config = self.model.config
        term = torch.zeros((), device=self.model.flux_offset.device)
        for index, loss in enumerate(losses):
            weight = scale * config.lambda_for(index if config.mode == "mdat" else 0)
            if config.objective == "paper":
                term = term - weight * loss
            else:  # bounded: no reward for pushing an adversary beyond a constant guess
                term = term + weight * F.relu(self.model.chance_loss[index] - loss)
        return term

    def training_step(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, float]:
        model, config = self.model, self.model.config
        flux, cp = batch["flux"], batch["cp"]
        scaled_flux, cp_inputs = model.scale_flux(flux), model.cp_inputs(cp)
        metrics = {}
        # One encoder pass serves both players: the adversaries train on a detached copy first
        # (the encoder's weights do not change meanwhile), then the autoencoder steps against them.
        latent = model.encode_scaled(model.with_input_noise(scaled_flux), cp_inputs)
        if model.adversaries:
            fixed_latent = latent.detach()
            for _ in range(config.adversary_steps):
                adversary_loss = sum(model.adversary_losses(fixed_latent, cp))
                self.optimizers["adversary"].zero_grad(set_to_none=True)
                adversary_loss.backward()
                self.optimizers["adversary"].step()
            metrics["adversary"] = float(adversary_loss.detach())
        reconstruction = F.mse_loss(model.decode_scaled(latent, cp_inputs), scaled_flux)
        loss = reconstruction
        if self.twins is not None:
            # The twin's spectrum from this star's latent, and the same latent for both: the
            # second term removes variation along Teff/logg that the decoder would ignore.
            twin_flux, twin_cp = self.twins.sample(batch["index"], flux.device)
            scaled_twin, twin_cp_inputs = model.scale_flux(twin_flux), model.cp_inputs(twin_cp)
            twin = F.mse_loss(model.decode_scaled(latent, twin_cp_inputs), scaled_twin)
            twin_latent = F.mse_loss(model.encode_scaled(model.with_input_noise(scaled_twin), twin_cp_inputs), latent)
            loss = loss + config.twin_weight * (twin + config.twin_latent_factor * twin_latent)
            metrics.update(twin=float(twin.detach()), twin_latent=float(twin_latent.detach()))
        if model.adversaries:
            losses = model.adversary_losses(latent, cp)
            loss = loss + self._adversarial_term(losses, self._lambda_scale(epoch))
            for name, value in zip(self._adversary_names(), losses):
                metrics[f"adv_{name}"] = float(value.detach())
        self.optimizers["autoencoder"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["autoencoder"].step()
        metrics.update(recon=float(reconstruction.detach()), loss=float(loss.detach()))
        return metrics

    def _adversary_names(self) -> list[str]:
        config = self.model.config
        return list(config.conditional) if config.mode == "mdat" else ["joint"]

    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        model = self.model
        flux, cp = batch["flux"], batch["cp"]
        scaled_flux, cp_inputs = model.scale_flux(flux), model.cp_inputs(cp)
        latent = model.encode_scaled(scaled_flux, cp_inputs)
        decoded = model.decode_scaled(latent, cp_inputs)
        reconstruction = F.mse_loss(decoded, scaled_flux)
        metrics = {
            "recon": float(reconstruction),
            "recon_flux_mse": float(F.mse_loss(model.unscale_flux(decoded), flux)),
        }
        objective = reconstruction
        if model.adversaries:
            losses = model.adversary_losses(latent, cp)
            for name, value in zip(self._adversary_names(), losses):
                metrics[f"adv_{name}"] = float(value)
            bounded = sum(
                model.config.lambda_for(i if model.config.mode == "mdat" else 0)
                * F.relu(model.chance_loss[i] - loss)
                for i, loss in enumerate(losses)
            )
            objective = objective + bounded
        metrics["objective"] = float(objective)
        return metrics


class DecoderFitTask:
    """Fit a decoder alone: mean squared error of ``decoder(batch["inputs"])`` against
    ``batch["target"]`` (both in network units). Used to refit a disentangler's decoder on its
    frozen latents, to train the label emulator and the regressor that estimates its labels."""

    monitor = "val_recon"

    def __init__(self, decoder: nn.Module, learning_rate: float):
        self.decoder = decoder
        self.modules = {"decoder": decoder}
        self.optimizers = {"decoder": torch.optim.Adam(decoder.parameters(), lr=learning_rate)}

    def training_step(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, float]:
        loss = F.mse_loss(self.decoder(batch["inputs"]), batch["target"])
        self.optimizers["decoder"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["decoder"].step()
        return {"recon": float(loss.detach())}

    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"recon": float(F.mse_loss(self.decoder(batch["inputs"]), batch["target"]))}


class TwinSampler:
    """Draws, for each training object, another object of the same chemical fingerprint."""

    def __init__(self, flux: np.ndarray, cp: np.ndarray, fingerprint: np.ndarray, seed: int):
        self.flux = torch.as_tensor(flux)
        self.cp = torch.as_tensor(cp)
        self.generator = torch.Generator().manual_seed(seed)
        order = np.argsort(fingerprint, kind="stable")
        _, starts, counts = np.unique(fingerprint[order], return_index=True, return_counts=True)
        position = np.empty(len(fingerprint), dtype=np.int64)
        position[order] = np.arange(len(fingerprint))
        group_of = np.repeat(np.arange(len(starts)), counts)[position]
        self.order = torch.as_tensor(order)
        self.group_start = torch.as_tensor(starts[group_of])
        self.group_size = torch.as_tensor(counts[group_of])

    def sample(self, index: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        index = index.cpu()
        offset = (torch.rand(len(index), generator=self.generator) * self.group_size[index]).long()
        twin = self.order[self.group_start[index] + offset]
        return self.flux[twin].to(device), self.cp[twin].to(device)


# ============================================================================ fit
def split_indices(labels, test_fraction: float, val_fraction: float, seed: int) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test for each object.

    Objects sharing a ``fingerprint`` (the same star rendered at several Teff/logg) stay in one
    split, so held-out stars are really unseen.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    groups = np.asarray(labels["fingerprint"]) if "fingerprint" in labels.colnames else np.arange(n)
    unique = rng.permutation(np.unique(groups))
    n_test = max(1, int(round(test_fraction * len(unique))))
    n_val = int(round(val_fraction * len(unique)))
    split_of_group = {g: 2 for g in unique[:n_test]}
    split_of_group.update({g: 1 for g in unique[n_test:n_test + n_val]})
    return np.array([split_of_group.get(g, 0) for g in groups], dtype=np.int8)


def flux_scaling(training_flux: np.ndarray, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel offset and scale taking training flux to network units, ``(flux - offset) / scale``:
    ``minmax`` maps each pixel to [0, 1] (the paper); ``standard`` removes the per-pixel mean and
    divides by one global std, which keeps the relative depths of lines."""
    flux = np.asarray(training_flux, dtype=np.float64)
    if scaling == "minmax":
        low, high = flux.min(axis=0), flux.max(axis=0)
        return low, np.maximum(high - low, 1e-6)
    offset = flux.mean(axis=0)
    return offset, np.full_like(offset, max(float((flux - offset).std()), 1e-6))


def _prepare_model(dataset: Dataset, config: DisentanglerConfig, train_index: np.ndarray) -> Disentangler:
    model = Disentangler(dataset.n_pixels, config)
    offset, scale = flux_scaling(dataset.spectra[train_index], config.scaling)
    cp = dataset.label_array(config.conditional)[train_index]
    with torch.no_grad():
        model.wavelength.copy_(torch.as_tensor(dataset.wavelength))
        model.flux_offset.copy_(torch.as_tensor(offset, dtype=torch.float32))
        model.flux_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        model.cp_mean.copy_(torch.as_tensor(cp.mean(axis=0), dtype=torch.float32))
        model.cp_std.copy_(torch.as_tensor(np.maximum(cp.std(axis=0), 1e-6), dtype=torch.float32))
        model.cp_min.copy_(torch.as_tensor(cp.min(axis=0), dtype=torch.float32))
        model.cp_max.copy_(torch.as_tensor(cp.max(axis=0), dtype=torch.float32))
        if isinstance(model.encoder, PolynomialReader):
            training_flux = torch.as_tensor(dataset.spectra[train_index], dtype=torch.float32)
            model.encoder.set_components(model.scale_flux(training_flux), seed=config.seed)
        # The loss of the best constant guess: 1 for standardised regression targets, the entropy
        # of the bin frequencies for classifiers.
        if config.mode != "noat" and config.adversary == "classifier":
            bins = model.cp_bins(torch.as_tensor(cp, dtype=torch.float32)).numpy()
            if config.mode == "at":
                joint = np.zeros(len(bins), dtype=np.int64)
                for i in range(bins.shape[1]):
                    joint = joint * config.n_bins + bins[:, i]
                columns = [joint]
            else:
                columns = [bins[:, i] for i in range(bins.shape[1])]
            entropies = []
            for column in columns:
                frequency = np.bincount(column) / len(column)
                frequency = frequency[frequency > 0]
                entropies.append(float(-(frequency * np.log(frequency)).sum()))
            model.chance_loss.copy_(torch.as_tensor(entropies, dtype=torch.float32))
    return model


def fit(
    dataset: Dataset,
    config: DisentanglerConfig,
    progress: Callable[[int, int, dict], None] | None = None,
    runs_root=None,
    run_id: str | None = None,
    data_source: dict | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> "DisentanglerRun":
    """Train a disentangler on ``dataset`` and save it as a run under ``runs_root/<id>/``.

    ``data_source`` records how to rebuild the dataset (e.g. {"kind": "simulator", "generator":
    "apogee", "params": {...}}) so the app can show the original spectra later. Progress is also
    written to the run folder, so another process can follow it.
    """
    missing = [name for name in config.conditional if name not in dataset.labels.colnames]
    if missing:
        raise DataError(
            f"Conditional parameters {missing} are not labels of this dataset "
            f"(it has {', '.join(dataset.labels.colnames)})."
        )
    if len(dataset) < 20:
        raise DataError(f"{len(dataset)} spectra are too few to train on; give at least 20.")
    seed_everything(config.seed)
    split = split_indices(dataset.labels, config.test_fraction, config.val_fraction, config.seed)
    train_index = np.flatnonzero(split == 0)
    val_index = np.flatnonzero(split == 1)
    model = _prepare_model(dataset, config, train_index)
    cp = dataset.label_array(config.conditional).astype(np.float32)
    twins = None
    # Twin consistency needs the same chemistry at several Teff/logg (a 'fingerprint' label);
    # without it the term is switched off and the run says so.
    if config.twin_weight > 0 and "fingerprint" in dataset.labels.colnames:
        twins = TwinSampler(dataset.spectra[train_index], cp[train_index],
                            np.asarray(dataset.labels["fingerprint"])[train_index], config.seed)
    task = DisentanglerTask(model, twins)

    run_id = run_id or new_run_id("disentangle", config.mode)
    folder = runs_dir(runs_root) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    record = RunRecord(
        id=run_id, path=folder, method="disentangle", config=config.to_json(),
        data=data_source or _source_from_provenance(dataset),
    )
    if not (resume and (folder / "run.json").exists()):
        record.write()

    # One progress scale over all phases; the twin codes' steps and the refit's epochs continue
    # the training's.
    batches_per_epoch = count_batches(len(train_index), config.batch_size)
    # The codes are distilled into a linear read-out, which only the cp-polynomial encoder has.
    code_steps = config.twin_code_steps if twins is not None and config.encoder == "cp-polynomial" else 0
    total_steps = (config.epochs + config.decoder_refit_epochs) * batches_per_epoch + code_steps

    def reporter(first_epoch: int, phase: str | None = None, extra_steps: int = 0):
        def report(step, total, metrics):
            step = step + first_epoch * batches_per_epoch + extra_steps
            if "epoch" in metrics:
                metrics = {**metrics, "epoch": metrics["epoch"] + first_epoch}
            if phase:
                metrics = {**metrics, "phase": phase}
            write_progress(folder, step, total_steps, metrics)
            if progress is not None:
                progress(step, total_steps, metrics)
        return report

    arrays = {"flux": dataset.spectra, "cp": cp}
    settings = LoopSettings(
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
        patience=config.patience, device=config.device, lr_schedule=config.lr_schedule,
    )
    started = time.perf_counter()
    try:
        history = train(
            task,
            {**{k: v[train_index] for k, v in arrays.items()}, "index": np.arange(len(train_index))},
            {k: v[val_index] for k, v in arrays.items()} if len(val_index) else None,
            settings, progress=reporter(0), checkpoint_dir=folder, resume=resume, should_stop=should_stop,
        )
        code_recon = None
        if code_steps > 0:
            fingerprint = np.asarray(dataset.labels["fingerprint"])[train_index]
            code_recon = _fit_twin_codes(model, arrays, train_index, fingerprint, config,
                                         reporter(config.epochs, TWIN_CODE_PHASE), should_stop)
        if config.decoder_refit_epochs > 0:
            refit = _refit_decoder(model, arrays, train_index, val_index, config,
                                   reporter(config.epochs, REFIT_PHASE, code_steps), folder / "decoder_refit",
                                   resume, should_stop)
            history.epochs.extend({**row, "epoch": row["epoch"] + config.epochs, "phase": REFIT_PHASE}
                                  for row in refit.epochs)
    except TrainingCancelled as error:
        record.status, record.message = "cancelled", str(error)
        record.write()
        raise
    except Exception as error:
        record.status, record.message = "failed", f"{type(error).__name__}: {error}"
        record.write()
        raise
    model.cpu()
    save_modules(folder / "weights.safetensors", {"model": model})
    run = DisentanglerRun(record, model)
    latent = run.encode(dataset.spectra, cp)
    reconstruction = run.decode(latent, cp)
    per_object_mse = ((reconstruction - dataset.spectra) ** 2).mean(axis=1)
    saved = {"split": split, "latent": latent, "recon_mse": per_object_mse}
    saved.update(_label_arrays(dataset))
    save_arrays(folder / "arrays.npz", saved)
    record.history = history.to_dict()
    record.metrics = {
        "train_seconds": time.perf_counter() - started,
        "recon_mse_test": float(per_object_mse[split == 2].mean()),
        "recon_mse_train": float(per_object_mse[split == 0].mean()),
        "best_epoch": history.best_epoch,
        "device": str(pick_device(config.device)),
        "twin_consistency": twins is not None,
        "twin_codes": code_steps > 0,
        "twin_code_recon": code_recon,
    }
    record.status = "done"
    record.write()
    return run


# The names of the phases after training in progress reports (and the refit's in the run's
# per-epoch history).
REFIT_PHASE = "decoder refit"
TWIN_CODE_PHASE = "twin codes"
# Spectra per optimisation step of the twin codes, their learning rate, and the ridge penalty of
# the read-out refit relative to the mean diagonal of the features' Gram matrix.
TWIN_CODE_BATCH, TWIN_CODE_LEARNING_RATE, TWIN_CODE_RIDGE = 3000, 0.02, 1e-3


def _fit_twin_codes(model: Disentangler, arrays: dict, train_index, fingerprint: np.ndarray,
                    config: DisentanglerConfig, report, should_stop) -> float:
    """Optimise one latent per training chemistry through the frozen decoder, then refit the
    encoder's read-out to it (see ``twin_code_steps``). Returns the codes' last batch
    reconstruction MSE (network units)."""
    device = pick_device(config.device)
    model.to(device).eval()
    _, chemistry = np.unique(fingerprint, return_inverse=True)
    chemistry = torch.as_tensor(chemistry.ravel(), device=device)
    with torch.no_grad():
        cp_inputs = model.cp_inputs(torch.as_tensor(arrays["cp"][train_index], device=device))
        scaled_flux = model.scale_flux(torch.as_tensor(arrays["flux"][train_index], device=device))
        latent = torch.cat([model.encode_scaled(scaled_flux[start:start + 4096], cp_inputs[start:start + 4096])
                            for start in range(0, len(train_index), 4096)])
    # Each chemistry starts from the mean of its spectra's latents.
    n_chemistries = int(chemistry.max()) + 1
    codes = torch.zeros(n_chemistries, latent.shape[1], device=device).index_add_(0, chemistry, latent)
    codes = (codes / torch.bincount(chemistry, minlength=n_chemistries)[:, None]).requires_grad_(True)
    frozen = [parameter for parameter in model.decoder.parameters() if parameter.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    optimizer = torch.optim.Adam([codes], lr=TWIN_CODE_LEARNING_RATE)
    generator = torch.Generator().manual_seed(config.seed + 2)
    try:
        for step in range(config.twin_code_steps):
            if should_stop is not None and should_stop():
                raise TrainingCancelled("Training was cancelled during the twin codes.")
            batch = torch.randperm(len(train_index), generator=generator)[:TWIN_CODE_BATCH].to(device)
            loss = F.mse_loss(model.decode_scaled(codes[chemistry[batch]], cp_inputs[batch]), scaled_flux[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            report(step + 1, config.twin_code_steps, {"code_recon": float(loss.detach())})
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    # The read-out sees the spectra with the training input noise, as the encoder did in training.
    _refit_readout(model, model.with_input_noise(scaled_flux), cp_inputs, codes.detach()[chemistry])
    return float(loss.detach())


@torch.no_grad()
def _refit_readout(model: Disentangler, scaled_flux: torch.Tensor, cp_inputs: torch.Tensor,
                   target_latent: torch.Tensor) -> None:
    """Ridge regression of the cp-polynomial encoder's read-out so that the encoder maps each
    spectrum to ``target_latent`` (after the model's latent activation, with its current statistics)."""
    from sklearn.linear_model import Ridge

    if model.config.latent_activation == "batchnorm":
        norm = model.latent_norm
        target = target_latent * torch.sqrt(norm.running_var + norm.eps) + norm.running_mean
    elif model.config.latent_activation == "sigmoid":
        target = torch.logit(target_latent.clamp(1e-4, 1 - 1e-4))
    else:
        target = target_latent
    encoder = model.encoder
    features = encoder.all_features(torch.cat([scaled_flux, cp_inputs], dim=1)).cpu().numpy()
    # The penalty relative to the mean diagonal of the centred features' Gram matrix.
    alpha = TWIN_CODE_RIDGE * len(features) * float(features.var(axis=0).mean())
    ridge = Ridge(alpha=alpha).fit(features, target.double().cpu().numpy())
    encoder.readout.weight.copy_(torch.as_tensor(ridge.coef_, dtype=encoder.readout.weight.dtype))
    encoder.readout.bias.copy_(torch.as_tensor(ridge.intercept_, dtype=encoder.readout.bias.dtype))


def _refit_decoder(model: Disentangler, arrays: dict, train_index, val_index, config: DisentanglerConfig,
                   report, checkpoint_dir: Path, resume: bool, should_stop):
    """Refit ``model.decoder`` on the frozen encoder's latents (see ``decoder_refit_epochs``)."""
    device = pick_device(config.device)
    model.to(device).eval()  # eval: the batch-normalised latent uses its running statistics

    def network_units(index) -> dict[str, np.ndarray]:
        inputs, targets = [], []
        with torch.no_grad():
            for start in range(0, len(index), 2048):
                part = index[start:start + 2048]
                flux = torch.as_tensor(arrays["flux"][part], device=device)
                cp_inputs = model.cp_inputs(torch.as_tensor(arrays["cp"][part], device=device))
                scaled_flux = model.scale_flux(flux)
                inputs.append(torch.cat([model.encode_scaled(scaled_flux, cp_inputs), cp_inputs], 1).cpu())
                targets.append(scaled_flux.cpu())
        return {"inputs": torch.cat(inputs).numpy(), "target": torch.cat(targets).numpy()}

    decoder = model.decoder if config.scaling != "minmax" else nn.Sequential(model.decoder, nn.Sigmoid())
    task = DecoderFitTask(decoder, config.learning_rate)
    settings = LoopSettings(epochs=config.decoder_refit_epochs, batch_size=config.batch_size,
                            seed=config.seed + 1, device=config.device, lr_schedule="cosine")
    checkpoint_dir.mkdir(exist_ok=True)
    return train(task, network_units(train_index), network_units(val_index) if len(val_index) else None,
                 settings, progress=report, checkpoint_dir=checkpoint_dir, resume=resume,
                 should_stop=should_stop)


def _source_from_provenance(dataset: Dataset) -> dict:
    """A rebuildable source for built-in simulator output, else a description of the data."""
    provenance = dataset.provenance
    if provenance.get("generator") in ("rvs", "apogee") and "params" in provenance:
        return {"kind": "simulator", "generator": provenance["generator"], "params": provenance["params"]}
    return {"kind": "dataset", "provenance": provenance, "n_objects": len(dataset)}


def _label_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    saved = {}
    for name in dataset.labels.colnames:
        column = np.asarray(dataset.labels[name])
        if column.dtype.kind in "fiub":
            saved[f"label_{name}"] = column
        elif column.dtype.kind in "US":
            saved[f"label_{name}"] = column.astype(str)
    return saved


# ============================================================================ inference
class DisentanglerRun:
    """A trained disentangler: encode, decode and generate in physical units."""

    method = "disentangle"

    def __init__(self, record: RunRecord, model: Disentangler):
        self.record = record
        self.model = model.eval()
        self.config = model.config

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def path(self) -> Path:
        return self.record.path

    @property
    def wavelength(self) -> np.ndarray:
        return self.model.wavelength.numpy()

    @property
    def conditional(self) -> tuple[str, ...]:
        return self.config.conditional

    @property
    def training_range(self) -> dict[str, tuple[float, float]]:
        """Range of each conditional parameter seen in training (physical units)."""
        return {
            name: (float(self.model.cp_min[i]), float(self.model.cp_max[i]))
            for i, name in enumerate(self.conditional)
        }

    @classmethod
    def load(cls, path) -> "DisentanglerRun":
        """Rebuild the model from run.json + weights.safetensors (no pickle)."""
        record = RunRecord.read(path)
        if record.status != "done":
            raise RuntimeError(f"Run {record.id} is {record.status}; only finished runs can be loaded.")
        config = DisentanglerConfig.from_json(record.config)
        n_pixels = _n_pixels_in_weights(Path(path) / "weights.safetensors")
        model = Disentangler(n_pixels, config)
        load_modules(Path(path) / "weights.safetensors", {"model": model})
        return cls(record, model)

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-object arrays saved with the run (split, latent, recon_mse, label_<name>)."""
        return load_arrays(self.path / "arrays.npz")

    def _conditional_array(self, conditional, n: int) -> np.ndarray:
        if isinstance(conditional, dict):
            conditional = np.stack([np.broadcast_to(np.asarray(conditional[name], dtype=np.float64), (n,))
                                    for name in self.conditional], axis=1)
        cp = np.asarray(conditional, dtype=np.float32)
        if cp.ndim == 1:
            cp = np.broadcast_to(cp, (n, cp.size))
        if cp.shape != (n, len(self.conditional)):
            raise DataError(
                f"Expected conditional parameters of shape ({n}, {len(self.conditional)}) for "
                f"{', '.join(self.conditional)}; got {cp.shape}."
            )
        return np.array(cp, dtype=np.float32)  # a writable copy (broadcast views are read-only)

    def check_spectra(self, spectra) -> np.ndarray:
        spectra = np.array(spectra, dtype=np.float32)
        if spectra.ndim == 1:
            spectra = spectra[None]
        if spectra.ndim != 2 or spectra.shape[1] != self.model.wavelength.numel():
            raise DataError(
                f"This model expects spectra of {self.model.wavelength.numel()} pixels over "
                f"{self.wavelength[0]:.1f}-{self.wavelength[-1]:.1f} Angstrom; got shape {spectra.shape}."
            )
        if not np.all(np.isfinite(spectra)):
            raise DataError("Spectra contain NaN or infinite flux.")
        return spectra

    @torch.no_grad()
    def encode(self, spectra, conditional, batch_size: int = 2048) -> np.ndarray:
        """Latent vectors (n, latent_dim) of ``spectra`` (n, n_pixels) at their conditional parameters."""
        spectra = self.check_spectra(spectra)
        cp = self._conditional_array(conditional, len(spectra))
        parts = [
            self.model.encode(torch.as_tensor(spectra[i:i + batch_size]), torch.as_tensor(cp[i:i + batch_size])).numpy()
            for i in range(0, len(spectra), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.config.latent_dim), np.float32)

    @torch.no_grad()
    def decode(self, latent, conditional, batch_size: int = 2048) -> np.ndarray:
        """Spectra (n, n_pixels), continuum-normalised flux, decoded from ``latent`` at ``conditional``."""
        latent = np.array(latent, dtype=np.float32)
        if latent.ndim == 1:
            latent = latent[None]
        if latent.shape[1] != self.config.latent_dim:
            raise DataError(f"Latent vectors must have {self.config.latent_dim} dimensions; got {latent.shape[1]}.")
        cp = self._conditional_array(conditional, len(latent))
        parts = [
            self.model.decode(torch.as_tensor(latent[i:i + batch_size]), torch.as_tensor(cp[i:i + batch_size])).numpy()
            for i in range(0, len(latent), batch_size)
        ]
        return np.concatenate(parts)

    def is_extrapolation(self, conditional) -> np.ndarray:
        """True where any conditional parameter lies outside the training range."""
        if isinstance(conditional, dict):
            n = max(np.size(value) for value in conditional.values())
        else:
            n = np.atleast_2d(np.asarray(conditional)).shape[0]
        cp = self._conditional_array(conditional, n)
        low, high = self.model.cp_min.numpy(), self.model.cp_max.numpy()
        return np.any((cp < low - 1e-6) | (cp > high + 1e-6), axis=1)

    def generate(self, spectrum, conditional_from, conditional_to) -> tuple[np.ndarray, np.ndarray]:
        """Re-render one or more stars at new conditional parameters.

        Encodes ``spectrum`` at ``conditional_from`` and decodes at each row of ``conditional_to``.
        Returns (spectra, extrapolation flags).
        """
        latent = self.encode(spectrum, conditional_from)
        target = np.atleast_2d(np.asarray(conditional_to, dtype=np.float32))
        latent = np.repeat(latent, len(target), axis=0) if len(latent) == 1 else latent
        return self.decode(latent, target), self.is_extrapolation(target)


def _n_pixels_in_weights(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.get_slice("model.wavelength").get_shape()[0]
