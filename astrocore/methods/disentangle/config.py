"""The disentangler's configuration: one frozen dataclass, validated on construction, and its presets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...training import LR_SCHEDULES
from ..spec import PresetConfig
from .dependence import DEPENDENCE_MEASURES

MODES = ("noat", "at", "mdat")
CP_FEATURES = ("linear", "fourier")
CONDITIONINGS = ("concat", "film", "film-encoder")
ENCODERS = ("mlp", "cp-polynomial")
PRESETS = ("fast", "fast-no-twins", "paper", "paper-fast")
ACTIVATION_NAMES = ("leaky_relu", "silu")


# ============================================================================ configuration
@dataclass(frozen=True)
class DisentanglerConfig(PresetConfig):
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
    # Whether training may read the ``fingerprint`` column (which spectra share a chemistry) at
    # all: False hides it from the twin term and the twin codes, as for survey data where each
    # star is seen once. The split still keeps a chemistry's spectra together when the column
    # exists, so held-out chemistries stay unseen. The run's metrics say whether twins were used.
    use_twins: bool = True
    # A dependence penalty between the latent and the standardised conditional parameters on
    # every batch (an addition to the paper; see dependence.py): none | hsic (normalised, Gaussian
    # kernels) | dcor (bias-corrected distance correlation), weighted relative to the
    # reconstruction MSE (only in the at / mdat modes).
    dependence: str = "none"
    dependence_weight: float = 0.0
    # At the start of every epoch, reinitialise the adversaries and fit them for this many steps
    # (batches of ``batch_size``) to the frozen latent of all training spectra, so the encoder
    # faces fresh adversaries rather than ones it has learned to dodge. 0 disables it.
    adversary_refit_steps: int = 0
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
    # Latent sizes to choose from by validation (choose_latent.py): one training per size, the kept
    # size reconstructs the validation spectra best among those whose latent reads each conditional
    # parameter at validation R^2 <= max_leakage. Empty: train latent_dim only.
    latent_candidates: tuple[int, ...] = ()
    max_leakage: float = 0.15
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
        for name in ("encoder_hidden", "decoder_hidden", "adversary_hidden", "latent_candidates"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.conditional:
            raise ValueError("At least one conditional parameter is needed (e.g. teff,logg).")
        if len(self.lambdas) not in (1, len(self.conditional)):
            raise ValueError(
                f"lambdas has {len(self.lambdas)} values; give one, or one per conditional parameter "
                f"({len(self.conditional)}: {', '.join(self.conditional)})."
            )
        checks = {
            "activation": ACTIVATION_NAMES,
            "latent_activation": ("sigmoid", "batchnorm", "none"),
            "scaling": ("minmax", "standard"),
            "adversary": ("classifier", "regression"),
            "objective": ("paper", "bounded"),
            "lr_schedule": LR_SCHEDULES,
            "cp_features": CP_FEATURES,
            "conditioning": CONDITIONINGS,
            "encoder": ENCODERS,
            "dependence": DEPENDENCE_MEASURES,
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        if self.twin_weight < 0 or self.twin_latent_factor < 0:
            raise ValueError("twin_weight and twin_latent_factor must be >= 0.")
        if self.dependence_weight < 0 or self.adversary_refit_steps < 0:
            raise ValueError("dependence_weight and adversary_refit_steps must be >= 0.")
        if self.dependence == "none" and self.dependence_weight > 0:
            raise ValueError("dependence_weight > 0 needs a dependence measure (hsic or dcor).")
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
        if any(size < 1 for size in self.latent_candidates) or len(set(self.latent_candidates)) != len(
                self.latent_candidates):
            raise ValueError(f"latent_candidates must be distinct sizes >= 1; got {self.latent_candidates}.")
        if self.latent_candidates and self.val_fraction <= 0:
            raise ValueError("latent_candidates are compared on the validation split: val_fraction must be > 0.")
        if not 0 < self.max_leakage <= 1:
            raise ValueError(f"max_leakage must be in (0, 1]; got {self.max_leakage}.")
        if not 0 < self.test_fraction < 1 or not 0 <= self.val_fraction < 1:
            raise ValueError("test_fraction must be in (0, 1) and val_fraction in [0, 1).")

    @classmethod
    def preset(cls, name: str = "fast", **overrides):
        """The named preset with ``overrides``. A latent size given explicitly (``latent_dim``) is
        trained as given: it replaces the preset's ``latent_candidates`` unless those are given too."""
        if "latent_dim" in overrides and "latent_candidates" not in overrides:
            overrides["latent_candidates"] = ()
        return super().preset(name, **overrides)

    def lambda_for(self, index: int) -> float:
        return self.lambdas[0] if len(self.lambdas) == 1 else self.lambdas[index]


# Named presets: ``fast`` (minutes on 2 CPU cores, improved recipe), ``paper`` (the published sizes
# and recipe, for a GPU) and ``paper-fast`` (the published recipe with the fast schedule).
DisentanglerConfig.PRESETS = {
        "fast": dict(
            latent_dim=12, latent_activation="batchnorm", scaling="standard",
            adversary="regression", objective="bounded", lambdas=(0.1,),
            adversary_hidden=(128, 64), adversary_learning_rate=2e-3,
            lambda_warmup_epochs=3, adversary_steps=5, twin_weight=1.0, twin_latent_factor=1.0, epochs=20,
            decoder_refit_epochs=5, twin_code_steps=200, batch_size=128, test_fraction=0.3,
            encoder="cp-polynomial", cp_features="fourier", activation="silu",
        ),
        # For data without twins (no fingerprint column, e.g. survey spectra): the fast recipe
        # without the twin term and twin codes, a small latent, a weak adversary (lambda 0.01)
        # and a per-batch HSIC penalty between z and the conditional parameters, which removes
        # the Teff and log g that adversaries alone leave in z (benchmarks/README.md, "Without
        # twins"). The latent size is chosen on validation among 4, 8 and 12 (choose_latent.py):
        # how much chemistry a survey's spectra carry is not known in advance. The long decoder
        # refit leaves the latent as it is and halves the reconstruction error of the 8-d latent
        # on the APOGEE-like grid (5 -> 30 epochs). preset_for_data picks it for ``fast`` when
        # the data has no fingerprint column.
        "fast-no-twins": dict(
            latent_dim=4, latent_activation="batchnorm", scaling="standard",
            adversary="regression", objective="bounded", lambdas=(0.01,),
            adversary_hidden=(128, 64), adversary_learning_rate=2e-3,
            lambda_warmup_epochs=3, adversary_steps=5, use_twins=False, twin_weight=0.0,
            twin_code_steps=0, dependence="hsic", dependence_weight=1.0, epochs=20,
            decoder_refit_epochs=30, latent_candidates=(4, 8, 12), max_leakage=0.15,
            batch_size=128, test_fraction=0.3,
            encoder="cp-polynomial", cp_features="fourier", activation="silu",
        ),
        "paper": dict(epochs=200, batch_size=64),
        "paper-fast": dict(epochs=25, batch_size=128),
    }


def preset_for_data(name: str, label_names) -> str:
    """The preset to use for data with these label columns: ``fast`` becomes ``fast-no-twins``
    when there is no ``fingerprint`` column (no spectra share a known chemistry, so the twin terms
    cannot run and the recipe without them is the one that works). Other presets are kept as
    asked (``paper`` stays the paper's binned discriminators)."""
    if name == "fast" and "fingerprint" not in set(label_names):
        return "fast-no-twins"
    return name
