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

This file: the torch modules (reads top to bottom). config.py holds the Config and presets,
fit.py the training, run.py inference.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...distributed import SyncedBatchNorm1d
from .config import DisentanglerConfig


# ============================================================================ modules
from .config import ACTIVATION_NAMES

ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "silu": nn.SiLU}
assert set(ACTIVATIONS) == set(ACTIVATION_NAMES)


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
        spread = singular[:n_components] / max(len(training_flux) - 1, 1) ** 0.5
        # Directions with almost no variance (beyond the rank of a small training set) would be
        # scaled up by 1/spread until float32 rounding dominates the latent: leave them out.
        n_components = int((spread > spread[0] * 1e-3).sum()) if n_components else 0
        self.centre.copy_(centre)
        self.components.zero_()
        self.components[:n_components] = axes[:, :n_components].T / spread[:n_components, None]

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
            SyncedBatchNorm1d(config.latent_dim, affine=False) if config.latent_activation == "batchnorm" else None
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


