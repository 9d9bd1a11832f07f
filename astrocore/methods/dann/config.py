"""The DANN configuration: one frozen dataclass, validated on construction, and its presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ...data.simulators.nebulae_observe import FEATURES
from ...data.simulators.nebulae import RATIO_TITLES
from ...training import LR_SCHEDULES

# dann: label + domain head (gradient reversal); source_only: the same network without the
# domain head; oracle: source_only trained on the labelled target rows (the ceiling).
MODES = ("dann", "source_only", "oracle")
LAMBDA_SCHEDULES = ("ganin", "constant")
# How the epoch kept at the end is chosen: "last"; "source_loss" (classification loss on the
# held-out source rows); or a label-free validator on the target (see validation.py).
SELECTIONS = ("last", "source_loss", "im", "entropy", "snd", "dev")
PRESETS = ("fast", "paper")
CLASS_WEIGHTINGS = ("estimated", "prior", "none")
DETECTION_LIMITS = ("none", "target")


@dataclass(frozen=True)
class DannConfig:
    """Everything that defines a DANN run. Validated on construction.

    features: log line ratios the network reads (names of :data:`RATIO_TITLES`), in dex.
    noise_sigma: standard deviation [dex] of Gaussian noise added to the source features in
    training (noise injection, Belfiore et al. 2025); 0 disables it.
    lambda_schedule: "ganin": lambda(p) = lambda_max (2 / (1 + exp(-10 p)) - 1), p the training
    progress 0..1 (Ganin et al. 2016); "constant": lambda_max throughout.
    """

    mode: str = "dann"
    features: tuple[str, ...] = FEATURES
    hidden: tuple[int, ...] = (64, 64)
    feature_dim: int = 32
    domain_hidden: tuple[int, ...] = (64,)
    dropout: float = 0.0
    lambda_schedule: str = "ganin"
    # Chosen label-free, by a rule fixed before any run of this configuration: among lambda_max
    # 0.3 / 1 / 3 (DANN + noise + detection limits, data seed 0, last epoch) the one with the best
    # deep embedded validation (DEV, You et al. 2019) on the target; DEV was preferred a priori as
    # the importance-weighted source risk, consistent under the label shift here, where IM assumes
    # balanced classes and entropy / SND reward confidence, not correctness. DEV chose 0.3 (the
    # target accuracies were not looked at; bench.py's lambda_selection reports them afterwards).
    lambda_max: float = 0.3
    noise_sigma: float = 0.0
    # "target": each source training row is observed at the detection limits of a random target
    # row (lines below 3 sigma enter at their limit, as in the catalogue; see shift.py), part of
    # the noise model; "none": the models as they are (the default here, as runs made before the
    # option were trained; the presets use "target").
    detection_limits: str = "none"
    # Class-balance correction of the domain loss (the models have equal thirds, observed
    # catalogues are mostly HII; aligning the two marginals as they are would push HII regions
    # onto PN and SNR): source rows are weighted in the domain loss by p_target(class) /
    # p_source(class) (IWDAN, Combes et al. 2020). "estimated": p_target by black-box shift estimation
    # from the network's target predictions (Lipton et al. 2018; label-free; shift.py),
    # re-estimated every epoch; "prior":
    # p_target is ``target_prior``, a class balance given in advance (e.g. the PHANGS-MUSE one);
    # "none": plain DANN.
    class_weighting: str = "estimated"
    target_prior: tuple[float, ...] = (0.86, 0.05, 0.09)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "constant"
    selection: str = "last"
    epochs: int = 25
    batch_size: int = 256
    val_fraction: float = 0.1  # of the source rows: held out for the source loss and the validators
    target_test_fraction: float = 0.3  # of the target rows: held out, labels used for evaluation only
    validator_objects: int = 800  # target rows the validators read each epoch
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        object.__setattr__(self, "target_prior", tuple(float(v) for v in self.target_prior))
        if len(self.target_prior) != 3 or min(self.target_prior) <= 0:
            raise ValueError(f"target_prior needs three positive shares (HII, PN, SNR); got {self.target_prior}.")
        for name in ("hidden", "domain_hidden"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        checks = {"class_weighting": CLASS_WEIGHTINGS, "detection_limits": DETECTION_LIMITS, "mode": MODES, "lambda_schedule": LAMBDA_SCHEDULES, "selection": SELECTIONS,
                  "lr_schedule": LR_SCHEDULES}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        unknown = [f for f in self.features if f not in RATIO_TITLES]
        if not self.features or unknown:
            raise ValueError(f"features must be names of {sorted(RATIO_TITLES)}; got unknown {unknown or 'none given'}.")
        if self.noise_sigma < 0 or self.lambda_max < 0:
            raise ValueError(f"noise_sigma and lambda_max must be >= 0; got {self.noise_sigma}, {self.lambda_max}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}.")
        if self.feature_dim < 1 or self.epochs < 1 or self.batch_size < 2 or any(h < 1 for h in self.hidden):
            raise ValueError("feature_dim, epochs and hidden sizes must be >= 1 and batch_size >= 2.")
        if not 0 < self.val_fraction < 1 or not 0 < self.target_test_fraction < 1:
            raise ValueError("val_fraction and target_test_fraction must be in (0, 1).")
        if self.validator_objects < 50:
            raise ValueError(f"validator_objects must be >= 50; got {self.validator_objects}.")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> "DannConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def preset(cls, name: str = "fast", **overrides) -> "DannConfig":
        """``fast`` (well under 2 minutes on 2 CPU cores, the app's default) and ``paper`` (wider
        network, longer schedule; for a GPU)."""
        presets = {
            "fast": dict(hidden=(64, 64), feature_dim=32, epochs=25, batch_size=256, lr_schedule="cosine",
                         detection_limits="target"),
            "paper": dict(hidden=(256, 256, 128), feature_dim=64, domain_hidden=(128, 128), epochs=100,
                          batch_size=128, dropout=0.1, lr_schedule="cosine", detection_limits="target"),
        }
        if name not in presets:
            raise ValueError(f"Unknown preset {name!r}; choose from {sorted(presets)}.")
        return cls(**{**presets[name], **overrides})
