"""Self-supervised pre-training on multi-band cutouts (Martinazzo, Espadoto & Hirata 2020).

A CNN learns, from unlabelled cutouts, to predict their magnitudes in every band (measured from
the images by aperture photometry); its features then classify stars, galaxies, quasars, mergers
and morphologies from few labels. A SimCLR-style contrastive objective with astronomical
augmentations is offered beside it and combined with it.
"""
from ..spec import MethodSpec
from .cli import add_commands
from .config import SSLConfig
from .evaluate import evaluate_run
from .fit import fit
from .run import SSLRun

SPEC = MethodSpec(
    name="ssl",
    title="Self-supervised pre-training on cutouts",
    config_class=SSLConfig,
    fit=fit,
    run_class=SSLRun,
    representations={"features": "backbone features (the CNN's pooled last layer)",
                     "magnitudes": "magnitudes predicted by the pretext network [AB mag]"},
    default_representation="features",
    add_commands=add_commands,
    page="pages/images.py",
    evaluate=evaluate_run,
)
