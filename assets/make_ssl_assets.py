"""Make the example cutouts of the Self-supervised images page: ``example_cutout.fits`` (a
simulated S-PLUS-like spiral galaxy, one image extension per band, blue to red, image units of
zero point 30) and ``example_cutout.png`` (its g, r, i colour composite).

    python assets/make_ssl_assets.py
"""
from pathlib import Path

import numpy as np
from astropy.io import fits
from PIL import Image

from astrocore.app.cutouts import cutout_rgb
from astrocore.data.simulators.cutouts import simulate_cutouts

HERE = Path(__file__).resolve().parent


def main() -> None:
    data = simulate_cutouts(12, seed=2020, mix={"spiral": 1.0}, r_range=(15.0, 16.0), use_cache=False, n_workers=1)
    index = int(np.argmax(np.asarray(data.labels["hlr_arcsec"])))  # the largest: its arms show
    image, labels = data.images[index], data.labels[index]
    primary = fits.PrimaryHDU()
    primary.header["OBJECT"] = ("simulated spiral galaxy", "astrocore cutout simulator")
    primary.header["RMAG"] = (float(labels["r_mag"]), "true r magnitude [AB]")
    primary.header["REDSHIFT"] = float(labels["redshift"])
    hdus = [primary]
    for plane, band in zip(image, data.bands):
        hdu = fits.ImageHDU(plane.astype(np.float32), name=band)
        hdu.header["FILTER"] = band
        hdu.header["PIXSCALE"] = (data.pixel_scale_arcsec, "arcsec / pixel")
        hdu.header["MAGZP"] = (30.0, "mag = MAGZP - 2.5 log10(flux)")
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(HERE / "example_cutout.fits", overwrite=True)
    planes = [data.bands.index(b) for b in ("g", "r", "i")]
    rgb = cutout_rgb(image[None, planes], ["g", "r", "i"])[0]
    Image.fromarray(rgb).save(HERE / "example_cutout.png")
    print(f"wrote example_cutout.fits ({len(data.bands)} bands) and example_cutout.png: r = {labels['r_mag']:.2f}")


if __name__ == "__main__":
    main()
