"""``astrocore bench batmm``: BATMM, its baselines and ablations on the same splits over seeds.

Per seed: BATMM is trained with :func:`fit` (spectrum encoder, image encoder, fusion); its encoders
are the image-only and spectrum-only (with attention) baselines; a VGG1D without attention is
trained as the plain spectrum-only baseline; the early fusions, the VGG1D fusion and the two
ablations are fusions trained on the same frozen tokens; SVM, gradient boosting and the physics
rule use the same split. Reported: F1 / precision / recall / ROC AUC of the BHB class on the test
split, mean and standard deviation over seeds, the attention weights and the timings.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from ...data.simulators.bhb import simulate_bhb
from ...data.readers.cutouts import write_cutout
from ...data.readers.sdss import write_spec_lite
from .baselines import gradient_boosting_probability, h_delta_features, rule_probability, svm_probability
from .config import BatmmConfig
from .fit import fit, model_inputs, run_encoder, split_indices, train_encoder
from .metrics import classification_metrics, sigmoid
from .predict import explain, read_star

BANDS = ("u", "g", "r", "i", "z")
MODELS = ("batmm", "image_only", "spectrum_only", "spectrum_only_attention", "early_add", "early_concat",
          "vgg1d_fusion", "svm", "gradient_boosting", "rule", "no_cross_attention", "no_modality_embedding")
# Wei et al. (2023), Table 8 and the text: F1 [%], mean of five runs (None: not reported).
PAPER_F1 = {"image_only": 73.0, "svm": 82.0, "gradient_boosting": 86.6, "spectrum_only": 92.0, "early_add": 92.3,
            "early_concat": 92.8, "vgg1d_fusion": 94.0, "batmm": 94.8, "spectrum_only_attention": None,
            "rule": None, "no_cross_attention": None, "no_modality_embedding": None}


def _summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": [float(v) for v in values]}


def predict_one_ms(run, dataset, repeats: int = 20) -> float:
    """Median time [ms] to read one star's spectrum (spec-lite FITS) and cutout (FITS) and classify it."""
    with tempfile.TemporaryDirectory() as folder:
        spectrum = write_spec_lite(Path(folder) / "spec.fits", dataset.wavelength, dataset.spectra[0],
                                   1.0 / dataset.errors[0] ** 2)
        cutout = write_cutout(Path(folder) / "cutout.fits", dataset.images[0])
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            flux, cube, _ = read_star(spectrum, cutout)
            explain(run, flux, cube)
            times.append(1e3 * (time.perf_counter() - started))
    return float(np.median(times))


def bench_seed(dataset, config: BatmmConfig, runs_root, progress=print) -> dict:
    """All models on one seed's split; returns {model: metrics} plus weights and timings.

    The two encoders are trained alone once (they are the image-only and spectrum-only-with-
    attention baselines) and every fusion (BATMM, its ablations, the early fusions) starts from
    copies of them and follows the same recipe: fusion on their frozen tokens, then the joint phase."""
    started = time.perf_counter()
    split = split_indices(dataset.labels, config.test_fraction, config.val_fraction, config.seed)
    inputs = model_inputs(dataset)
    label = inputs["label"].astype(int)
    test = split == 2
    spectrum_encoder, _ = train_encoder("spectrum", inputs, split, config)
    image_encoder, _ = train_encoder("image", inputs, split, config)
    encoder_seconds = time.perf_counter() - started
    progress(f"  encoders ({encoder_seconds:.0f} s)")
    fused_started = time.perf_counter()
    run = fit(dataset, config, runs_root=runs_root, encoders=(spectrum_encoder, image_encoder))
    batmm_seconds = encoder_seconds + time.perf_counter() - fused_started
    scores = {"batmm": run.record.metrics["test"],
              "image_only": run.record.metrics["image_only"],
              "spectrum_only_attention": run.record.metrics["spectrum_only_attention"]}
    progress(f"  batmm F1 {scores['batmm']['f1']:.3f} ({batmm_seconds:.0f} s)")
    for name, changes in (("early_add", {"fusion": "early_add"}), ("early_concat", {"fusion": "early_concat"}),
                          ("no_cross_attention", {"cross_attention": False}),
                          ("no_modality_embedding", {"modality_embedding": False})):
        variant = fit(dataset, dataclasses.replace(config, **changes), runs_root=runs_root,
                      encoders=(spectrum_encoder, image_encoder))
        scores[name] = variant.record.metrics["test"]
        progress(f"  {name} F1 {scores[name]['f1']:.3f}")
    vgg, _ = train_encoder("spectrum", inputs, split, config, attention=False)
    scores["spectrum_only"] = classification_metrics(label[test], sigmoid(run_encoder(vgg, inputs["spectrum"])["logit"][test]))
    variant = fit(dataset, dataclasses.replace(config, fusion="early_concat", spectrum_attention=False),
                  runs_root=runs_root, encoders=(vgg, image_encoder))
    scores["vgg1d_fusion"] = variant.record.metrics["test"]
    progress(f"  spectrum_only F1 {scores['spectrum_only']['f1']:.3f}, vgg1d_fusion F1 {scores['vgg1d_fusion']['f1']:.3f}")
    scores["svm"] = classification_metrics(label[test], svm_probability(inputs["spectrum"], label, split, config.seed)[test])
    scores["gradient_boosting"] = classification_metrics(
        label[test], gradient_boosting_probability(inputs["spectrum"], label, split, config.seed)[test])
    d02, fm = h_delta_features(dataset.spectra, dataset.wavelength)
    u_g = np.asarray(dataset.labels["mag_u"]) - np.asarray(dataset.labels["mag_g"])
    rule, cuts = rule_probability(d02, fm, u_g, label, split)
    scores["rule"] = {**classification_metrics(label[test], rule[test]), "cuts": cuts}
    progress(f"  svm {scores['svm']['f1']:.3f}, gbm {scores['gradient_boosting']['f1']:.3f}, rule {scores['rule']['f1']:.3f}")
    # Band occlusion: how much the image encoder's ROC AUC drops when a band is replaced by zeros.
    base_auc = scores["image_only"]["roc_auc"]
    occlusion = {}
    for b, band in enumerate(BANDS):
        occluded = inputs["image"][test].copy()
        occluded[:, b] = 0.0
        logit = run_encoder(image_encoder, occluded)["logit"]
        occlusion[band] = base_auc - classification_metrics(label[test], sigmoid(logit))["roc_auc"]
    per_star = run.arrays()["band_weights"][test]
    return {"scores": scores, "band_weights": run.record.metrics["band_weights"],
            "band_weights_star_std": dict(zip(BANDS, per_star.std(axis=0).tolist())),
            "segment_weights": run.record.metrics["segment_weights"], "band_occlusion_auc_drop": occlusion,
            "batmm_train_s": batmm_seconds, "seed_seconds": time.perf_counter() - started,
            "predict_one_ms": predict_one_ms(run, dataset), "missing_image_f1": run.record.metrics["missing_image"]["f1"],
            "missing_spectrum_f1": run.record.metrics["missing_spectrum"]["f1"], "test_ece": run.record.metrics["test_ece"]}


def bench_batmm(n_stars: int = 4000, seeds: int = 5, preset: str = "fast", snr: float = 15.0, data_seed: int = 0,
                progress=print, **config_overrides) -> dict:
    """The bench record (see the module docstring) as a JSON-able dict."""
    started = time.perf_counter()
    dataset = simulate_bhb(n_stars, seed=data_seed, snr=snr)
    per_seed = []
    with tempfile.TemporaryDirectory() as runs_root:
        for seed in range(seeds):
            progress(f"seed {seed + 1}/{seeds}")
            config = BatmmConfig.preset(preset, seed=seed, **config_overrides)
            per_seed.append(bench_seed(dataset, config, runs_root, progress))
    models = {}
    for name in MODELS:
        rows = [seed["scores"][name] for seed in per_seed]
        models[name] = {metric: _summary([row[metric] for row in rows])
                        for metric in ("f1", "precision", "recall", "roc_auc")}
        models[name]["paper_f1_percent"] = PAPER_F1[name]
    return {
        "models": models,
        "band_weights": {band: float(np.mean([s["band_weights"][band] for s in per_seed])) for band in BANDS},
        "band_weights_star_std": {band: float(np.mean([s["band_weights_star_std"][band] for s in per_seed]))
                                  for band in BANDS},
        "band_occlusion_auc_drop": {band: float(np.mean([s["band_occlusion_auc_drop"][band] for s in per_seed]))
                                    for band in BANDS},
        "segment_weights": np.mean([s["segment_weights"] for s in per_seed], axis=0).tolist(),
        "segment_edges_aa": (10 ** np.linspace(np.log10(4000.0), np.log10(4000.0) + 0.3522, 8)).tolist(),
        "missing_image_f1": _summary([s["missing_image_f1"] for s in per_seed]),
        "missing_spectrum_f1": _summary([s["missing_spectrum_f1"] for s in per_seed]),
        "test_ece": _summary([s["test_ece"] for s in per_seed]),
        "train_s": _summary([s["batmm_train_s"] for s in per_seed]),
        "seed_s": _summary([s["seed_seconds"] for s in per_seed]),
        "predict_one_ms": float(np.median([s["predict_one_ms"] for s in per_seed])),
        "total_s": time.perf_counter() - started,
        "setup": {"n_stars": n_stars, "seeds": seeds, "preset": preset, "snr": snr, "data_seed": data_seed,
                  "split": "70/20/10 stratified, new split per seed", "config_overrides": config_overrides},
    }
