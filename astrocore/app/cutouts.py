"""Multi-band cutouts for display: bands ordered blue to red, Lupton et al. (2004) asinh RGB
composites, greyscale bands and grids of cutouts as plotly figures."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import plotly.graph_objects as go
from astropy.visualization import make_lupton_rgb
from PIL import Image


class CutoutError(ValueError):
    """Cutouts that cannot be displayed as asked; the message is meant for the user."""


# ============================================================================ cutouts
#: Effective wavelengths [Å] of common photometric bands, to order a cutout's bands from blue to red.
BAND_WAVELENGTHS = {
    "FUV": 1530, "NUV": 2310, "u": 3551, "U": 3650, "B": 4450, "g": 4686, "BP": 5110, "V": 5510,
    "r": 6166, "G": 6230, "R": 6580, "i": 7480, "RP": 7770, "I": 8060, "z": 8932, "y": 9633, "Y": 10310,
    "J": 12350, "H": 16620, "Ks": 21460, "K": 21590, "W1": 33680, "W2": 46180, "W3": 120820, "W4": 221940,
    # S-PLUS narrow bands (Mendes de Oliveira et al. 2019), named by their central wavelength in nm.
    "J0378": 3770, "J0395": 3940, "J0410": 4094, "J0430": 4292, "J0515": 5133, "J0660": 6614, "J0861": 8611,
}
MAX_CUTOUTS = 48


def band_wavelength(name: str) -> float | None:
    """The effective wavelength [Å] of a band called e.g. ``r``, ``sdss_r``, ``HSC-i`` or ``W1``."""
    name = str(name).strip()
    for candidate in (name, re.split(r"[_\-. /]", name)[-1], name.removesuffix("-band").removesuffix("_band")):
        if candidate in BAND_WAVELENGTHS:
            return float(BAND_WAVELENGTHS[candidate])
    return None


def bands_blue_to_red(bands) -> list[int]:
    """Plane indices ordered from the bluest band to the reddest (known band names by wavelength;
    unknown names keep their order, which is assumed to run from blue to red)."""
    bands = list(bands)
    known = [band_wavelength(b) for b in bands]
    if any(w is None for w in known):
        return list(range(len(bands)))
    return sorted(range(len(bands)), key=lambda i: known[i])


def rgb_bands(bands) -> tuple[int, int, int]:
    """Plane indices (R, G, B) of the default colour composite: the bands ordered blue to red, the
    bluest dropped when there are five or more (u of ugriz is noisy), then the first three: reddest
    of them -> R. ugriz -> (i, r, g) like SDSS's colour images; grz -> (z, r, g). With fewer than
    three bands the reddest fills the missing channels. Broad g, r, i, when all present (S-PLUS's 12
    bands), make the composite as in ugriz."""
    names = [str(band) for band in bands]
    if all(name in names for name in ("g", "r", "i")):
        return names.index("i"), names.index("r"), names.index("g")
    order = bands_blue_to_red(bands)
    if len(order) >= 5:
        order = order[1:]
    chosen = order[:3]
    while len(chosen) < 3:
        chosen.append(chosen[-1])
    return chosen[2], chosen[1], chosen[0]


def cutout_modes(bands) -> dict[str, str]:
    """Display modes of cutouts: ``rgb`` (a colour composite) and one greyscale mode per band."""
    if not bands:
        return {}
    r, g, b = rgb_bands(bands)
    modes = {"rgb": f"colour ({bands[r]}, {bands[g]}, {bands[b]} → R, G, B)"}
    modes.update({str(name): f"{name} band" for name in bands})
    return modes


def cutout_rgb(images: np.ndarray, bands, mode: str = "rgb", stretch: float | None = None,
               q: float = 8.0) -> np.ndarray:
    """Cutouts (k, n_bands, h, w) as 8-bit RGB images (k, h, w, 3): a Lupton et al. (2004) asinh
    composite (``astropy.visualization.make_lupton_rgb``) of three bands, or one band in grey
    (``mode`` = its name). One stretch for all of them (from the pixels' 99.5th percentile above
    the per-band median sky, unless ``stretch`` is given), so brightnesses compare across the grid."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise CutoutError(f"Cutouts must be an array (k, n_bands, height, width); got shape {images.shape}.")
    bands = list(bands)
    if mode == "rgb":
        planes = rgb_bands(bands)
    elif mode in bands:
        planes = (bands.index(mode),) * 3
    else:
        raise CutoutError(f"mode must be 'rgb' or one of the bands {bands}; got {mode!r}.")
    if not len(images):
        return np.zeros((0,) + images.shape[2:] + (3,), np.uint8)
    chosen = np.nan_to_num(images[:, list(planes)], nan=0.0, posinf=0.0, neginf=0.0)
    sky = np.median(chosen, axis=(0, 2, 3), keepdims=True)
    chosen = chosen - sky
    if stretch is None:  # half the 99.5th percentile: compact sources reach the bright end of the scale
        stretch = 0.5 * float(np.percentile(chosen, 99.5))
        stretch = stretch if stretch > 0 else float(np.max(np.abs(chosen))) or 1.0
    return np.stack([make_lupton_rgb(c[0], c[1], c[2], minimum=0.0, stretch=stretch, Q=q) for c in chosen])


def _png_data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def cutout_grid_figure(images, bands, rows, names=None, mode: str = "rgb", columns: int = 8,
                       max_cutouts: int = MAX_CUTOUTS, tile_px: int = 110, title: str = "", linked: str = "cutouts"):
    """A grid of the cutouts of ``rows`` (full-set row numbers into ``images`` (n, n_bands, h, w)),
    as RGB composites or one band in grey (see :func:`cutout_rgb`), one name under each.

    The grid is one mosaic image sent as a PNG (a few tens of kB for 48 cutouts), not one trace per
    cutout. At most ``max_cutouts`` are drawn (the first rows given; the meta says how many).
    """
    rows = np.asarray(rows, int)[:max_cutouts]
    names = [str(n) for n in (names if names is not None else rows)][:len(rows)]
    images = np.asarray(images)
    if images.ndim != 4:
        raise CutoutError(f"Cutouts must be an array (n, n_bands, height, width); got shape {images.shape}.")
    figure = go.Figure()
    height_px, width_px = images.shape[2], images.shape[3]
    columns = max(1, min(int(columns), len(rows) or 1))
    n_rows = max(1, -(-len(rows) // columns))
    gap = max(1, width_px // 16)
    label = int(np.ceil(height_px * 15 / tile_px))  # room for a name under each tile (about 15 screen px)
    step_x, step_y = width_px + gap, height_px + gap + label
    mosaic = np.full((n_rows * step_y, columns * step_x - gap, 3), 255, np.uint8)
    tiles = cutout_rgb(images[rows], bands, mode) if len(rows) else []
    annotations = []
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y0, x0 = r * step_y, c * step_x
        mosaic[y0:y0 + height_px, x0:x0 + width_px] = tile
        annotations.append(dict(x=x0 + width_px / 2, y=y0 + height_px + label / 2, text=names[i], showarrow=False,
                                xanchor="center", yanchor="middle", font=dict(size=10, color="#333")))
    figure.add_trace(go.Image(source=_png_data_uri(mosaic), hoverinfo="skip"))
    figure.update_layout(
        height=int(n_rows * tile_px * step_y / height_px + (40 if title else 10)), template="plotly_white",
        margin=dict(l=4, r=4, t=34 if title else 4, b=4), title=dict(text=title) if title else None,
        xaxis=dict(visible=False, range=[-0.5, mosaic.shape[1] - 0.5], constrain="domain"),
        yaxis=dict(visible=False, range=[mosaic.shape[0] - 0.5, -0.5], scaleanchor="x", constrain="domain"),
        annotations=annotations, meta={"linked": linked, "n_cutouts": len(tiles), "mode": mode})
    return figure
