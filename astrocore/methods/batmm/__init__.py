"""Identifying blue horizontal branch stars from an SDSS spectrum and a ugriz cutout (BATMM;
Wei, Jiang & Zhang 2023, PASP 135, 084501).

A VGG-style 1-D CNN with self-attention over 7 wavelength segments encodes the spectrum, a small
ResNet behind a squeeze-and-excitation gate over the bands encodes the cutout, and a fusion
transformer (modality embeddings, [CLS], cross-attention image -> spectrum, self-attention,
feed-forward) combines their tokens. Files: ``config.py``, ``model.py``, ``fit.py`` (transfer
training), ``run.py`` (BatmmRun: predict_proba, attention, representations), ``predict.py`` (one
star from files), ``metrics.py``, ``baselines.py``, ``bench.py``, ``cli.py``.
"""
from ..spec import MethodSpec
from .cli import add_commands
from .config import BatmmConfig
from .fit import fit
from .run import BatmmRun

__all__ = ["BatmmConfig", "BatmmRun", "fit", "SPEC"]


def evaluate_run(run: BatmmRun, max_objects: int = 4000) -> dict:
    """The test-split metrics stored with the run (computed at the end of training)."""
    metrics = run.record.metrics
    summary = {"f1_test": metrics["test"]["f1"], "precision_test": metrics["test"]["precision"],
               "recall_test": metrics["test"]["recall"], "roc_auc_test": metrics["test"]["roc_auc"],
               "ece_test": metrics["test_ece"], "temperature": metrics["temperature"],
               "image_only_f1": metrics["image_only"]["f1"],
               "spectrum_only_attention_f1": metrics["spectrum_only_attention"]["f1"],
               "missing_image_f1": metrics["missing_image"]["f1"], "missing_spectrum_f1": metrics["missing_spectrum"]["f1"]}
    return summary


SPEC = MethodSpec(
    name="batmm",
    title="Multimodal BHB identification (BATMM)",
    config_class=BatmmConfig,
    fit=fit,
    run_class=BatmmRun,
    representations={"cls": "fused [CLS] token", "spectrum": "spectrum encoder token", "image": "image encoder token"},
    default_representation="cls",
    add_commands=add_commands,
    page="pages/multimodal.py",
    evaluate=evaluate_run,
)
