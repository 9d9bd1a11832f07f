"""``astrocore bench dann``: target accuracy, macro-F1 and per-class recall of the rule baseline,
source-only (+ noise), DANN (+ noise) and the oracle over seeds on the default gap; a sweep of the
gap strength; how well the label-free validators track the true target accuracy; a cross-check
with ``skada.deep.DANN`` on the same features; training and classification times."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from astropy.table import Table

from ...data.readers.catalogues import read_nebula_catalogue
from ...data.simulators.nebulae import CLASSES, LINE_NAMES
from ...data.simulators.nebulae_observe import expected_class_balance, simulate_nebulae
from .baselines import rule_classify
from .config import DannConfig
from .fit import classification_metrics, feature_matrix, fit, split_rows
from .run import DannRun
from .shift import censor, detection_limits, line_levels
from .validation import VALIDATORS, pick, rank_correlations

NOISE_SIGMA = 0.15  # dex: the noise-injection level of the *_noise models
# "noise": the observational noise model on the source rows in training, Gaussian scatter of
# NOISE_SIGMA dex plus the catalogue's detection limits (shift.py); the *_gaussian_only rows are
# the ablation without the limits.
NOISE = dict(noise_sigma=NOISE_SIGMA, detection_limits="target")
MODELS = {
    "source_only": dict(mode="source_only", detection_limits="none"),
    "source_only_noise": dict(mode="source_only", **NOISE),
    "dann": dict(mode="dann", detection_limits="none"),
    "dann_noise": dict(mode="dann", **NOISE),
    "oracle": dict(mode="oracle"),
    "source_only_noise_gaussian_only": dict(mode="source_only", noise_sigma=NOISE_SIGMA, detection_limits="none"),
    "dann_noise_gaussian_only": dict(mode="dann", noise_sigma=NOISE_SIGMA, detection_limits="none"),
}


def _target_test(dataset, config: DannConfig) -> np.ndarray:
    labels = dataset.labels
    x = feature_matrix(labels, config.features)
    return np.flatnonzero((np.asarray(labels["domain"]) == "target") & (split_rows(labels, config) == 2)
                          & np.isfinite(x).all(1))


def rule_metrics(dataset, config: DannConfig) -> dict:
    rows = _target_test(dataset, config)
    labels = dataset.labels[rows]
    predicted = rule_classify({k: np.asarray(labels[k], float) for k in ("log_oiii_hb", "log_nii_ha", "log_sii_ha")})
    return classification_metrics(np.asarray(labels["class_index"]), predicted)


def _summary(rows: list[dict]) -> dict:
    accuracy = [r["accuracy"] for r in rows]
    f1 = [r["macro_f1"] for r in rows]
    recall = {name: float(np.mean([r["recall"][name] for r in rows if r["recall"][name] is not None]))
              for name in CLASSES}
    recall_std = {name: float(np.std([r["recall"][name] for r in rows if r["recall"][name] is not None]))
                  for name in CLASSES}
    return {"target_accuracy": {"mean": float(np.mean(accuracy)), "std": float(np.std(accuracy))},
            "macro_f1": {"mean": float(np.mean(f1)), "std": float(np.std(f1))}, "recall": recall,
            "recall_std": recall_std, "per_seed_accuracy": accuracy, "per_seed_macro_f1": f1}


def skada_cross_check(dataset, config: DannConfig, epochs: int) -> dict:
    """skada.deep.DANN (skorch) with the same layer sizes on the same features and splits (the
    source rows at one draw of the detection limits if the config uses them; no class weighting)."""
    from skada.deep import DANN  # lazy: skorch is only needed here
    from torch import nn

    labels = dataset.labels
    x = feature_matrix(labels, config.features)
    y = np.asarray(labels["class_index"], np.int64)
    target = np.asarray(labels["domain"]) == "target"
    split = split_rows(labels, config)
    ok = np.isfinite(x).all(1)
    source_rows = np.flatnonzero(~target & (split == 0) & ok)
    pool, test = np.flatnonzero(target & (split == 0) & ok), np.flatnonzero(target & (split == 2) & ok)
    rng = np.random.default_rng(config.seed)
    seen = x[source_rows]
    if config.detection_limits == "target":  # one fixed draw of the catalogue's detection limits
        limits = detection_limits(labels, pool)
        seen = censor(line_levels(labels, source_rows), limits[rng.integers(0, len(limits), len(source_rows))],
                      config.features)
    mean, std = seen.mean(0), seen.std(0)
    noisy = seen + rng.normal(0, config.noise_sigma, seen.shape) if config.noise_sigma else seen
    X = ((np.concatenate([noisy, x[pool]]) - mean) / std).astype(np.float32)
    Y = np.concatenate([y[source_rows], np.full(len(pool), -1)])
    domain = np.concatenate([np.ones(len(source_rows)), -np.ones(len(pool))]).astype(int)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [len(config.features), *config.hidden, config.feature_dim]
            layers = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(config.feature_dim, len(CLASSES))

        def forward(self, x, sample_weight=None):
            return self.head(self.features(x))

    torch.manual_seed(config.seed)
    started = time.perf_counter()
    model = DANN(Net(), layer_name="features", reg=config.lambda_max, num_features=config.feature_dim,
                 max_epochs=epochs, batch_size=config.batch_size, optimizer=torch.optim.Adam, lr=config.learning_rate,
                 train_split=None, verbose=0)
    model.fit(X, Y, sample_domain=domain)
    seconds = time.perf_counter() - started
    Xt = ((x[test] - mean) / std).astype(np.float32)
    predicted = np.asarray(model.predict(Xt, sample_domain=-np.ones(len(test), int), allow_source=False))
    return {**classification_metrics(y[test], predicted), "train_s": seconds, "epochs": epochs}


def classify_seconds(run: DannRun, dataset, n_rows: int = 30_000) -> float:
    """Seconds to read a CSV catalogue of ``n_rows`` nebulae and classify it (measured)."""
    labels = dataset.labels[np.asarray(dataset.labels["domain"]) == "target"]
    index = np.resize(np.arange(len(labels)), n_rows)
    table = Table({c: np.asarray(labels[c])[index] for c in labels.colnames
                   if c.endswith("_FLUX") or c.endswith("_FLUX_ERR")})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalogue.csv"
        table.write(path, format="ascii.csv")
        started = time.perf_counter()
        result = run.classify_table(read_nebula_catalogue(path).labels)
        seconds = time.perf_counter() - started
    assert len(result) == n_rows
    return seconds


def bench_dann(seeds: int = 5, preset: str = "fast", n: int = 8000, sweep: str = "0,0.25,0.5,0.75,1.0",
               sweep_seeds: int = 2, runs_root=None, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda line: None)
    temporary = tempfile.TemporaryDirectory() if runs_root is None else None
    root = Path(runs_root or temporary.name)
    per_model = {name: [] for name in ("rule", *MODELS)}
    checkpoints, train_seconds, classify_s, skada, priors = [], [], None, None, []
    started = time.perf_counter()
    for seed in range(seeds):
        dataset = simulate_nebulae(n, n, seed=seed)
        base = DannConfig.preset(preset, seed=seed)
        per_model["rule"].append(rule_metrics(dataset, base))
        for name, settings in MODELS.items():
            run = fit(dataset, DannConfig.preset(preset, seed=seed, **settings), runs_root=root,
                      run_id=f"bench-{name}-{seed}")
            per_model[name].append(run.record.metrics["target"])
            if name == "dann_noise":
                train_seconds.append(run.record.metrics["train_seconds"])
                priors.append([list(run.record.metrics[key].values())
                               for key in ("target_prior_estimate", "target_prior_em")])
                checkpoints.append(run.record.history["checkpoints"])
                if classify_s is None:
                    classify_s = classify_seconds(run, dataset)
            say(f"seed {seed} {name}: target accuracy {run.record.metrics['target']['accuracy']:.3f} "
                f"({time.perf_counter() - started:.0f} s)")
        if seed == 0:
            result_lambda = _lambda_selection(dataset, preset, root, say)
            config = DannConfig.preset(preset, seed=seed, **MODELS["dann_noise"])
            try:
                skada = skada_cross_check(dataset, config, config.epochs)
                say(f"skada.deep.DANN: target accuracy {skada['accuracy']:.3f}")
            except ImportError as error:
                skada = {"error": f"skada.deep needs skorch: {error}"}
    result = {"default_gap": {name: _summary(rows) for name, rows in per_model.items()}}
    gain = [a["accuracy"] - b["accuracy"] for a, b in zip(per_model["dann_noise"], per_model["source_only"])]
    result["gain_dann_noise_over_source_only"] = {"mean": float(np.mean(gain)), "std": float(np.std(gain))}
    gain = [a["accuracy"] - b["accuracy"] for a, b in zip(per_model["dann_noise"], per_model["source_only_noise"])]
    result["gain_dann_noise_over_source_only_noise"] = {"mean": float(np.mean(gain)), "std": float(np.std(gain))}
    priors = np.asarray(priors)  # (seeds, [bbse, em], classes)
    result["target_prior_estimate"] = {
        "classes": list(CLASSES), "true": list(expected_class_balance()),
        "bbse_mean": priors[:, 0].mean(0).tolist(), "bbse_std": priors[:, 0].std(0).tolist(),
        "em_mean": priors[:, 1].mean(0).tolist(), "em_std": priors[:, 1].std(0).tolist(),
        "what": "dann_noise's label-free estimates at its last epoch: BBSE (Lipton et al. 2018; used for the "
                "domain-loss weights) and EM (Saerens et al. 2002; for comparison)"}
    result["validators"] = _validator_summary(checkpoints)
    result["lambda_selection"] = result_lambda
    result["skada_dann"] = skada
    result["gap_sweep"] = []
    for gap in [float(g) for g in sweep.split(",") if g.strip()]:
        rows = {"rule": [], "source_only": [], "source_only_noise": [], "dann_noise": []}
        for seed in range(sweep_seeds):
            dataset = simulate_nebulae(n, n, seed=100 + seed, gap=gap)
            rows["rule"].append(rule_metrics(dataset, DannConfig.preset(preset, seed=seed))["accuracy"])
            for name in ("source_only", "source_only_noise", "dann_noise"):
                config = DannConfig.preset(preset, seed=seed, **MODELS[name])
                run = fit(dataset, config, runs_root=root,
                          run_id=f"bench-sweep-{gap}-{name}-{seed}")
                rows[name].append(run.record.metrics["target"]["accuracy"])
        entry = {"gap": gap, **{f"{k}_accuracy": float(np.mean(v)) for k, v in rows.items()}}
        entry["gain"] = entry["dann_noise_accuracy"] - entry["source_only_accuracy"]
        entry["gain_over_source_only_noise"] = entry["dann_noise_accuracy"] - entry["source_only_noise_accuracy"]
        result["gap_sweep"].append(entry)
        say(f"gap {gap}: {entry}")
    result["train_s"] = {"mean": float(np.mean(train_seconds)), "max": float(np.max(train_seconds)),
                         "what": "one dann_noise fit (epochs incl. per-epoch validators), 1 thread"}
    result["classify_30k_s"] = classify_s
    result["settings"] = {"seeds": seeds, "preset": preset, "n_source": n, "n_target": n, "noise_sigma": NOISE_SIGMA,
                          "config": DannConfig.preset(preset, **MODELS["dann_noise"]).to_json(),
                          "seconds": time.perf_counter() - started}
    if temporary is not None:
        temporary.cleanup()
    return result


LAMBDAS = (0.3, 1.0, 3.0)
LAMBDA_VALIDATOR = "dev"  # fixed before the runs that use it (see DannConfig.lambda_max)


def _lambda_selection(dataset, preset: str, root: Path, say) -> dict:
    """DANN + noise at several lambda_max (seed 0): the label-free validator ``LAMBDA_VALIDATOR``
    at each run's kept epoch picks one; the true target accuracy says how good the pick was."""
    rows = []
    for strength in LAMBDAS:
        run = fit(dataset, DannConfig.preset(preset, lambda_max=strength, **MODELS["dann_noise"]), runs_root=root,
                  run_id=f"bench-lambda-{strength}")
        validators = run.record.metrics["validators"]
        rows.append({"lambda_max": strength, "target_accuracy": run.record.metrics["target"]["accuracy"],
                     "macro_f1": run.record.metrics["target"]["macro_f1"],
                     **{name: validators[name] for name in VALIDATORS}})
        say(f"lambda {strength}: {rows[-1]}")
    chosen = max(rows, key=lambda row: row[LAMBDA_VALIDATOR])
    return {"validator": LAMBDA_VALIDATOR, "runs": rows, "chosen_lambda": chosen["lambda_max"],
            "spearman_over_lambdas": rank_correlations(rows),
            "chosen_accuracy": chosen["target_accuracy"], "best_accuracy": max(r["target_accuracy"] for r in rows)}


def _validator_summary(checkpoints: list[list[dict]]) -> dict:
    """Per validator: mean Spearman correlation with the true target accuracy over checkpoints,
    and the target accuracy of the checkpoint it picks vs the last and the best."""
    summary = {}
    for name in (*VALIDATORS, "source_loss", "last"):
        picked = [rows[pick(rows, name)]["target_accuracy"] for rows in checkpoints]
        entry = {"picked_accuracy": float(np.mean(picked))}
        if name in VALIDATORS:
            values = [rank_correlations(rows)[name] for rows in checkpoints]
            values = [v for v in values if v is not None]
            entry["spearman_with_target_accuracy"] = float(np.mean(values)) if values else None
            entry["spearman_std"] = float(np.std(values)) if values else None
        summary[name] = entry
    summary["used"] = {"validator": LAMBDA_VALIDATOR, "for": "lambda_max (epoch: the last one)",
                       "chosen": "before any run of the configuration, on a priori grounds (DannConfig.lambda_max)"}
    summary["best_possible_accuracy"] = float(np.mean([max(r["target_accuracy"] for r in rows) for rows in checkpoints]))
    return summary
