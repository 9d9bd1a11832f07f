"""Make the app's small assets: home-page pictures (PNG, drawn with PIL) and example spectra files
for the upload widgets (made by astrocore's own simulators). Run from the repository root:

    python assets/make_assets.py

Everything is deterministic; the outputs are small (tens of kB each).
"""
from __future__ import annotations

import io
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
SIZE = (480, 270)
BACKGROUND = (250, 250, 252)
INK = (60, 66, 80)


def _font(size: int):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _canvas():
    image = Image.new("RGB", (SIZE[0] * 2, SIZE[1] * 2), BACKGROUND)  # drawn at 2x, then downsampled
    return image, ImageDraw.Draw(image)


def _save(image: Image.Image, name: str) -> None:
    image = image.resize(SIZE, Image.LANCZOS)
    image.save(HERE / name, optimize=True)
    print(f"wrote assets/{name} ({(HERE / name).stat().st_size / 1024:.0f} kB)")


def _teff_colour(fraction: float) -> tuple[int, int, int]:
    """Cool (red) to hot (blue)."""
    stops = [(0.0, (200, 60, 40)), (0.5, (240, 190, 80)), (1.0, (60, 110, 200))]
    for (f0, c0), (f1, c1) in zip(stops[:-1], stops[1:]):
        if fraction <= f1:
            t = (fraction - f0) / (f1 - f0)
            return tuple(int(a + (b - a) * t) for a, b in zip(c0, c1))
    return stops[-1][1]


def _polyline(draw, xs, ys, box, y_range, colour, width=3):
    x0, y0, x1, y1 = box
    lo, hi = y_range
    points = [(x0 + (x1 - x0) * (x - xs[0]) / (xs[-1] - xs[0]), y1 - (y1 - y0) * (y - lo) / (hi - lo))
              for x, y in zip(xs, ys)]
    draw.line(points, fill=colour, width=width, joint="curve")


def spectra_picture() -> None:
    """The same chemistry re-rendered from cool to hot: the Ca II triplet region of the RVS simulator."""
    from astrocore.data.simulators.rvs import RVS_WAVELENGTH, render_rvs

    teffs = np.array([3900.0, 4500.0, 5100.0, 5700.0, 6300.0])
    spectra = render_rvs({"teff": teffs, "logg": np.full(5, 2.5), "feh": np.full(5, -0.2), "afe": np.full(5, 0.1)})
    image, draw = _canvas()
    box = (70, 60, 930, 500)
    keep = (RVS_WAVELENGTH > 8480) & (RVS_WAVELENGTH < 8680)
    wavelength = RVS_WAVELENGTH[keep]
    for i, (teff, flux) in enumerate(zip(teffs, spectra)):
        _polyline(draw, wavelength, flux[keep] + 0.16 * (4 - i), box, (0.1, 1.75), _teff_colour(i / 4), width=3)
    font = _font(30)
    draw.text((70, 12), "Slide Teff through the decoder", fill=INK, font=font)
    small = _font(24)
    for w, name in ((8498.0, "Ca II"), (8542.1, "Ca II"), (8662.1, "Ca II")):
        x = box[0] + (box[2] - box[0]) * (w - wavelength[0]) / (wavelength[-1] - wavelength[0])
        draw.line([(x, box[1]), (x, box[3])], fill=(150, 150, 170), width=1)
        draw.text((x + 6, box[3] - 30), name, fill=INK, font=small)
    for i, teff in enumerate(teffs):
        draw.text((box[0] + 10 + i * 170, 505), f"{teff:.0f} K", fill=_teff_colour(i / 4), font=small)
    _save(image, "tool_spectra.png")


def runs_picture() -> None:
    image, draw = _canvas()
    font, small = _font(30), _font(22)
    draw.text((40, 12), "Runs: compare, download, delete", fill=INK, font=font)
    box = (60, 80, 560, 500)
    draw.rectangle(box, outline=(180, 180, 190), width=2)
    x = np.linspace(0, 1, 60)
    curves = (((43, 108, 176), 6.0, 0.10), ((221, 107, 32), 4.0, 0.22), ((47, 133, 90), 9.0, 0.05))
    for k, (colour, rate, floor) in enumerate(curves):
        y = floor + (0.95 - floor) * np.exp(-x * rate) + 0.012 * np.sin(40 * x + k)
        _polyline(draw, x, y, (box[0] + 10, box[1] + 10, box[2] - 10, box[3] - 10), (0, 1.05), colour, width=5)
    draw.text((box[0] + 14, box[3] - 36), "epoch", fill=INK, font=small)
    rows = [("default-apogee-mdat", "mdAT", "done"), ("disentangle-at", "AT", "done"),
            ("disentangle-noat", "noAT", "done"), ("rvs-mdat", "mdAT", "running")]
    for i, (name, mode, status) in enumerate(rows):
        y = 100 + i * 95
        draw.rounded_rectangle((600, y, 930, y + 75), radius=12, fill=(255, 255, 255), outline=(200, 200, 210), width=2)
        draw.text((616, y + 8), name, fill=INK, font=small)
        colour = (47, 133, 90) if status == "done" else (221, 107, 32)
        draw.text((616, y + 40), f"{mode} · {status}", fill=colour, font=small)
    _save(image, "tool_runs.png")


def multimodal_picture() -> None:
    image, draw = _canvas()
    rng = np.random.default_rng(1)
    bands = [(90, 60, 200), (40, 140, 90), (220, 120, 40), (200, 50, 40), (120, 40, 40)]
    for b, colour in enumerate(bands):
        x0 = 40 + b * 180
        stamp = np.zeros((150, 150))
        yy, xx = np.mgrid[:150, :150]
        stamp += np.exp(-((xx - 75) ** 2 + (yy - 75) ** 2) / (2 * (9 + b) ** 2))
        stamp += 0.35 * np.exp(-((xx - 30 - 10 * b) ** 2 + (yy - 110) ** 2) / 50)
        stamp += rng.normal(0, 0.05 + 0.04 * (b == 0), stamp.shape)
        stamp = np.clip(stamp / stamp.max(), 0, 1)
        rgb = (np.stack([stamp * c for c in colour], axis=-1) + 245 * (1 - stamp[..., None])).astype(np.uint8)
        image.paste(Image.fromarray(rgb).resize((150, 150)), (x0, 60))
        draw.text((x0 + 62, 215), "ugriz"[b], fill=INK, font=_font(28))
    x = np.linspace(4000, 9000, 400)
    flux = 1 - 0.5 * np.exp(-((x - 4861) / 40) ** 2) - 0.45 * np.exp(-((x - 4340) / 35) ** 2) - 0.4 * np.exp(
        -((x - 6563) / 45) ** 2) - 0.35 * np.exp(-((x - 4102) / 30) ** 2)
    flux = flux * (1.3 - (x - 4000) / 9000)
    _polyline(draw, x, flux, (40, 290, 930, 520), (0.2, 1.3), (43, 108, 176), width=4)
    _save(image, "tool_multimodal.png")


def nebulae_picture() -> None:
    image, draw = _canvas()
    box = (80, 40, 920, 500)
    draw.rectangle(box, outline=(180, 180, 190), width=2)
    xr, yr = (-2.0, 0.7), (-1.3, 1.4)

    def to_px(x, y):
        return (box[0] + (box[2] - box[0]) * (x - xr[0]) / (xr[1] - xr[0]),
                box[3] - (box[3] - box[1]) * (y - yr[0]) / (yr[1] - yr[0]))

    for curve, colour in (((0.61, 0.05, 1.30), (90, 90, 110)), ((0.61, 0.47, 1.19), (160, 60, 60))):
        a, b, c = curve
        xs = np.linspace(xr[0], b - 0.05, 200)
        ys = a / (xs - b) + c
        keep = (ys > yr[0]) & (ys < yr[1])
        draw.line([to_px(x, y) for x, y in zip(xs[keep], ys[keep])], fill=colour, width=4)
    rng = np.random.default_rng(3)
    for n, (mx, my, sx, sy), colour in ((140, (-0.45, -0.3, 0.15, 0.3), (43, 108, 176)),
                                        (40, (-0.1, 0.9, 0.3, 0.2), (128, 90, 213)),
                                        (50, (-0.05, 0.2, 0.15, 0.3), (221, 107, 32))):
        for x, y in zip(rng.normal(mx, sx, n), rng.normal(my, sy, n)):
            px, py = to_px(x, y)
            draw.ellipse((px - 6, py - 6, px + 6, py + 6), fill=colour)
    small = _font(24)
    draw.text((box[0] + 10, box[3] - 34), "log [N II]/Hα", fill=INK, font=small)
    draw.text((box[0] + 10, box[1] + 6), "log [O III]/Hβ", fill=INK, font=small)
    for i, (name, colour) in enumerate((("HII", (43, 108, 176)), ("PN", (128, 90, 213)), ("SNR", (221, 107, 32)))):
        draw.text((box[2] - 110, box[3] - 130 + 34 * i), name, fill=colour, font=_font(28))
    _save(image, "tool_nebulae.png")


def images_picture() -> None:
    image, draw = _canvas()
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:120, :120] - 60.0
    for i in range(12):
        q, angle = rng.uniform(0.3, 1.0), rng.uniform(0, math.pi)
        x_rot = xx * math.cos(angle) + yy * math.sin(angle)
        y_rot = (-xx * math.sin(angle) + yy * math.cos(angle)) / q
        radius = np.hypot(x_rot, y_rot)
        n = rng.choice([1.0, 4.0])
        galaxy = np.exp(-(radius / rng.uniform(8, 20)) ** (1 / n))
        if i % 3 == 0:  # spiral arms
            theta = np.arctan2(y_rot, x_rot)
            galaxy *= 1 + 0.5 * np.cos(2 * theta - radius / 6)
        galaxy += rng.normal(0, 0.03, galaxy.shape)
        galaxy = np.clip(galaxy / galaxy.max(), 0, 1)
        tint = np.array([255, 230, 200]) if n > 2 else np.array([200, 220, 255])
        rgb = (galaxy[..., None] * tint + (1 - galaxy[..., None]) * 18).astype(np.uint8)
        tile = Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(0.8))
        image.paste(tile, (30 + (i % 6) * 155, 40 + (i // 6) * 240))
    _save(image, "tool_images.png")


def explore_picture() -> None:
    image, draw = _canvas()
    rng = np.random.default_rng(7)
    for k in range(5):
        centre = rng.uniform((150, 120), (830, 440))
        colour = _teff_colour(k / 4)
        for point in rng.normal(centre, rng.uniform(25, 60), (120, 2)):
            draw.ellipse((point[0] - 5, point[1] - 5, point[0] + 5, point[1] + 5), fill=colour)
    draw.line([(300, 150), (420, 110), (520, 200), (430, 300), (300, 260), (300, 150)], fill=INK, width=3)
    _save(image, "tool_explore.png")


def example_spectra() -> None:
    """A few simulated spectra in the formats the upload widgets read."""
    from astrocore.data.simulators.apogee import simulate_apogee
    from astrocore.data.readers import write_gandalf_folder, write_table
    from astrocore.data.simulators.rvs import simulate_rvs

    rvs = simulate_rvs(n_stars=5, seed=11, use_cache=False)
    write_table(rvs, HERE / "example_rvs_spectra.csv")
    print("wrote assets/example_rvs_spectra.csv")
    with tempfile.TemporaryDirectory() as folder:
        gandalf = write_gandalf_folder(rvs, Path(folder) / "example_gandalf_rvs")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(gandalf.iterdir()):
                archive.write(file, arcname=f"example_gandalf_rvs/{file.name}")
        (HERE / "example_gandalf_rvs.zip").write_bytes(buffer.getvalue())
    print("wrote assets/example_gandalf_rvs.zip")
    # A chemistry the default model has never seen, at four Teff / log g: on the default model's grid.
    apogee = simulate_apogee(n_fingerprints=1, seed=2024, teff_grid=[4200.0, 5200.0], logg_grid=[1.0, 2.2],
                             snr=150, use_cache=False)
    apogee.save(HERE / "example_apogee_spectra.fits")
    (HERE / "example_apogee_spectra.fits").chmod(0o644)
    print("wrote assets/example_apogee_spectra.fits")


if __name__ == "__main__":
    import sys

    if "--examples-only" in sys.argv:
        example_spectra()
        raise SystemExit(0)
    spectra_picture()
    runs_picture()
    multimodal_picture()
    nebulae_picture()
    images_picture()
    explore_picture()
    example_spectra()
