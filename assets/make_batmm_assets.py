"""Make the BATMM page's example uploads: one simulated BHB star as an SDSS spec-lite FITS and its
ugriz cutout as a multi-extension FITS (one HDU per band).

    python assets/make_batmm_assets.py
"""
from pathlib import Path

import numpy as np

from astrocore.data.readers.cutouts import write_cutout
from astrocore.data.readers.sdss import write_spec_lite
from astrocore.data.simulators.bhb import simulate_bhb

HERE = Path(__file__).resolve().parent


def main() -> None:
    dataset = simulate_bhb(20, seed=2024, snr=15.0, use_cache=False)
    labels = dataset.labels
    # The brightest BHB star of the sample: a clear example.
    bhb = np.flatnonzero(np.asarray(labels["label"]) == 1)
    star = int(bhb[np.argmin(np.asarray(labels["g_true"])[bhb])])
    header = {"OBJID": str(labels["id"][star]), "TEFF": float(labels["teff"][star]),
              "LOGG": float(labels["logg"][star]), "FEH": float(labels["feh"][star]), "CLASS": "BHB (simulated)"}
    write_spec_lite(HERE / "example_bhb_spectrum.fits", dataset.wavelength, dataset.spectra[star],
                    1.0 / dataset.errors[star] ** 2, header=header)
    write_cutout(HERE / "example_bhb_cutout.fits", dataset.images[star])
    print(f"wrote {labels['id'][star]} (Teff {labels['teff'][star]:.0f} K, log g {labels['logg'][star]:.2f}, "
          f"g = {labels['mag_g'][star]:.2f}) to {HERE}")


if __name__ == "__main__":
    main()
