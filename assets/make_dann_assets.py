"""Make assets/example_nebulae_catalogue.csv: 300 simulated "observed" nebulae with PHANGS-MUSE
column names (fluxes and errors in 1e-20 erg s^-1 cm^-2), a few of them deliberately unusable
(a missing Halpha, an undetected Hbeta) so the upload shows its reasons.

    python assets/make_dann_assets.py
"""
from pathlib import Path

import numpy as np
from astropy.table import Table

from astrocore.data.simulators.nebulae import LINE_NAMES
from astrocore.data.simulators.nebulae_observe import simulate_nebulae

OUT = Path(__file__).resolve().parent / "example_nebulae_catalogue.csv"


def main() -> None:
    labels = simulate_nebulae(10, 300, seed=2024).labels
    labels = labels[labels["domain"] == "target"]
    table = Table()
    table["region_ID"] = np.arange(len(labels))
    table["gal_name"] = [f"SIM{g:02d}" for g in labels["galaxy"]]
    for line in LINE_NAMES:
        table[f"{line}_FLUX"] = np.round(np.asarray(labels[f"{line}_FLUX"], float), 2)
        table[f"{line}_FLUX_ERR"] = np.round(np.asarray(labels[f"{line}_FLUX_ERR"], float), 2)
    table["HA6562_FLUX"][5] = np.nan
    table["HB4861_FLUX"][11] = 0.5 * table["HB4861_FLUX_ERR"][11]
    table.write(OUT, format="ascii.csv", overwrite=True)
    print(f"wrote {len(table)} nebulae to {OUT}")


if __name__ == "__main__":
    main()
