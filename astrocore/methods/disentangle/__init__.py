"""Disentangling stellar spectra from their conditional parameters (GANDALF; Santoveña et al. 2024).

An autoencoder E(x, cp) -> z, D(z, cp) -> x is trained to reconstruct spectra x while adversaries
try to predict the conditional parameters cp (Teff, log g, ...) from the latent z, so z keeps the
chemistry and the decoder re-renders a star at any cp. Files: ``config.py`` (DisentanglerConfig and
its presets), ``model.py`` (torch modules), ``fit.py`` (training), ``run.py`` (DisentanglerRun:
encode, decode, generate), ``emulator.py`` (the label-decoder reference), ``evaluate.py``,
``bench.py``, ``cli.py``.
"""
from ..spec import MethodSpec
from .choose_latent import fit_run
from .cli import add_commands
from .config import MODES, DisentanglerConfig
from .evaluate import evaluate_run
from .fit import fit
from .run import DisentanglerRun

__all__ = ["DisentanglerConfig", "DisentanglerRun", "MODES", "fit", "fit_run", "SPEC"]

SPEC = MethodSpec(
    name="disentangle",
    title="Disentangling (GANDALF)",
    config_class=DisentanglerConfig,
    fit=fit_run,
    run_class=DisentanglerRun,
    representations={"z": "latent z", "X": "input spectra X", "h": "encoder features h"},
    default_representation="z",
    add_commands=add_commands,
    page="pages/spectra.py",
    evaluate=evaluate_run,
)
