"""A small, vectorised line-synthesis engine shared by the RVS-like and APOGEE-like simulators.

The model is a single-layer (Milne-Eddington-like) photosphere, honest in shape rather than in
detail:

1. **Atmosphere** (:func:`atmosphere`). A grey, Eddington temperature law T(tau) is integrated in
   hydrostatic equilibrium, dP/dtau = g / kappa(T, Pe), from the surface down to the line-forming
   layer ``TAU_LINE`` (tau at 5000 Angstrom). The electron pressure follows from charge
   conservation with hydrogen and the metal electron donors (Saha), so Pe rises with gravity and
   with metallicity. The continuous opacity is H- (bound-free and free-free), neutral hydrogen
   bound-free/free-free, Rayleigh scattering on H and Thomson scattering (Gray, *The Observation
   and Analysis of Stellar Photospheres*). Molecular hydrogen, CO, CN, OH and TiO follow from
   dissociation equilibria K_p(T) computed from partition functions (~ 10**(-theta D0)).
2. **Line strengths** (:func:`line_strengths`). For each line the ratio of line to continuous
   opacity, integrated over the profile (Angstrom), is
   ``eta_int = (pi e^2 / m c^2) lambda^2 gf (N_species / N_H) 10**(-theta chi) / U / kappa_c``:
   abundance x ionisation (Saha) or dissociation fraction x Boltzmann factor / partition function,
   over the continuous opacity per hydrogen nucleus.
3. **Profiles** (:meth:`Synthesizer.node_matrix`, :func:`voigt`). Voigt profiles with a Doppler
   core (thermal + microturbulence, which grows in giants) and a Lorentzian width from radiation,
   van der Waals (neutral H perturbers, grows with gas pressure) and quadratic Stark broadening;
   hydrogen lines get linear Stark widths ~ Ne**(2/3) (n_u^2 - n_l^2). Profiles depend only on
   (Teff, log g): they
   are evaluated at the nodes of a regular (Teff, log g) lattice for a solar-metallicity reference
   atmosphere, stored as sparse (n_lines x n_fine) matrices, and interpolated bilinearly between
   nodes (exact at the nodes). Line strengths, which carry the chemistry, are exact for every star.
4. **Flux**. The opacity ratios of all lines add up, eta(lambda) = sum_i eta_int_i phi_i(lambda), on
   an oversampled grid; the Milne-Eddington residual flux r = 1 - D_max eta / (1 + eta) saturates
   strong lines (curve of growth) and never goes negative; D_max grows as Teff falls (steeper
   source function). Finally a Gaussian line-spread function of resolving power R maps the
   oversampled flux onto the instrument pixels.

Everything is deterministic and uses no global random state."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import dawsn, voigt_profile

from .atmosphere import Atmosphere, atmosphere, line_strengths, max_depth
from .linelists import AMU, C_KMS, DAMP_TO_A, ETA_FLOOR, K_BOLTZ, SPECIES, STARK_H, LineList
from .stellar_labels import scaled_abundances

# ----------------------------------------------------------------------------- profiles
_H1_V = np.linspace(0.0, 12.0, 2401)
_H1_TABLE = -2.0 / np.sqrt(np.pi) * (1.0 - 2.0 * _H1_V * dawsn(_H1_V))


def voigt(x, sigma, gamma, a_max=0.15):
    """Normalised Voigt profile [1/A] at offsets ``x`` [A] (Gaussian sigma, Lorentzian HWHM gamma).

    For small damping (a = gamma / (sqrt(2) sigma) <= a_max, almost every line) the Harris
    expansion H(a, v) = H0 + a H1 + a^2 H2 is used (error < a^3, i.e. < 0.4 % of the peak), with
    H1 tabulated from Dawson's function and its asymptotic series in the far wings (a / (sqrt(pi)
    v^2)); larger damping (hydrogen, strong pressure-broadened lines) uses scipy's exact Faddeeva
    based voigt_profile.
    """
    x = np.asarray(x, dtype=float)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), x.shape)
    gamma = np.broadcast_to(np.asarray(gamma, dtype=float), x.shape)
    width = np.sqrt(2.0) * sigma
    a = gamma / width
    out = np.empty_like(x)
    small = a <= a_max
    if np.any(small):
        v = np.abs(x[small]) / width[small]
        av = a[small]
        h0 = np.exp(-v * v)
        inside = v < 12.0
        h1 = np.empty_like(v)
        h1[inside] = np.interp(v[inside], _H1_V, _H1_TABLE)
        vo = v[~inside]
        h1[~inside] = (1.0 + 1.5 / vo**2 + 3.75 / vo**4) / (np.sqrt(np.pi) * vo**2)
        h = h0 + av * h1 + av * av * (1.0 - 2.0 * v * v) * h0
        out[small] = h / (np.sqrt(np.pi) * width[small])
    if not np.all(small):
        big = ~small
        out[big] = voigt_profile(x[big], sigma[big], gamma[big])
    return out


# ----------------------------------------------------------------------------- spectrograph
@dataclass
class _Segment:
    out_start: int
    out_stop: int
    fine_start: int  # offset of this segment in the concatenated fine grid
    margin: int  # output pixels of margin on each side (in fine pixels: margin * k)
    weights: np.ndarray  # (n_out, 2K+1) line-spread-function weights


class Spectrograph:
    """The instrument: output pixels, resolving power R and an oversampled 'fine' grid.

    Each output pixel is divided into ``oversample`` fine pixels (uniform in the coordinate x that
    maps pixel index to wavelength, ``wavelength_of(x)``). Line opacity is evaluated on the fine
    grid, converted to flux, then convolved with a Gaussian LSF of FWHM lambda/R evaluated at the
    output pixel centres. ``segments``: list of (first, last+1) ranges of the pixel index x (several
    for detectors with gaps); the output pixels of consecutive segments are concatenated.
    """

    def __init__(self, wavelength_of, segments, resolving_power, oversample=4, n_sigma=4.0):
        self.resolving_power = float(resolving_power)
        self.oversample = int(oversample)
        k = self.oversample
        fine, self.segments = [], []
        out_pos, fine_pos = 0, 0
        out_wl = []
        for x0, x1 in segments:
            n_out = x1 - x0
            x_out = np.arange(x0, x1, dtype=float)
            wl_out = wavelength_of(x_out)
            dwl_dx = wavelength_of(x_out + 0.5 / k) - wavelength_of(x_out - 0.5 / k)  # A per fine px
            sigma_fine = wl_out / (self.resolving_power * 2.3548) / dwl_dx
            half = int(np.ceil(n_sigma * sigma_fine.max()))
            margin = half // k + 2
            x_fine = x0 - margin + np.arange((n_out + 2 * margin) * k) / k
            fine.append(wavelength_of(x_fine))
            taps = np.arange(-half, half + 1)
            w = np.exp(-0.5 * (taps[None, :] / sigma_fine[:, None]) ** 2)
            w /= w.sum(axis=1, keepdims=True)
            self.segments.append(_Segment(out_pos, out_pos + n_out, fine_pos, margin,
                                          w.astype(np.float32)))
            out_wl.append(wl_out)
            out_pos += n_out
            fine_pos += x_fine.size
        self.fine_wavelength = np.concatenate(fine)
        self.wavelength = np.concatenate(out_wl)
        if np.any(np.diff(self.fine_wavelength) <= 0):
            raise ValueError("spectrograph segments overlap; the fine grid must increase")

    @property
    def n_pixels(self) -> int:
        return self.wavelength.size

    def convolve(self, fine_depth: np.ndarray) -> np.ndarray:
        """LSF convolution of line depth on the fine grid, (n_fine, n) -> (n_pixels, n)."""
        k = self.oversample
        out = np.zeros((self.n_pixels, fine_depth.shape[1]), dtype=np.float32)
        for seg in self.segments:
            n_out = seg.out_stop - seg.out_start
            half = (seg.weights.shape[1] - 1) // 2
            centre0 = seg.fine_start + seg.margin * k
            acc = out[seg.out_start:seg.out_stop]
            for t in range(-half, half + 1):
                start = centre0 + t
                block = fine_depth[start:start + n_out * k:k]
                acc += seg.weights[:, t + half, None] * block
        return out


# ----------------------------------------------------------------------------- synthesizer
class Synthesizer:
    """Renders continuum-normalised spectra for a line list through a spectrograph.

    Profiles live on a (Teff, log g) lattice with origin (teff0, logg0) and steps (dteff, dlogg);
    node matrices are built lazily and kept in a small LRU cache.
    """

    def __init__(self, lines: LineList, spectrograph: Spectrograph, band, lattice,
                 window_cap=25.0, hydrogen_window_cap=80.0, molecule_window_cap=3.0, cache_size=96):
        self.lines = lines
        self.spectrograph = spectrograph
        self.band = band
        self.teff0, self.dteff, self.logg0, self.dlogg = lattice
        self.window_cap = window_cap
        self.hydrogen_window_cap = hydrogen_window_cap
        self.molecule_window_cap = molecule_window_cap
        self.cache_size = cache_size
        self._nodes: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # the app may render from several threads
        self._is_molecule = np.array([SPECIES[s].kind == "molecule" for s in lines.species])
        self._is_hydrogen = lines.n_low > 0
        self._mass = np.array([SPECIES[s].mass for s in lines.species])

    # -- profiles -------------------------------------------------------------
    def node_matrix(self, i: int, j: int):
        """Sparse transposed profile matrix (n_fine x n_lines) at lattice node (i, j), cached."""
        key = (i, j)
        with self._lock:
            if key in self._nodes:
                self._nodes.move_to_end(key)
                return self._nodes[key]
        matrix = self._build_node(self.teff0 + i * self.dteff, self.logg0 + j * self.dlogg)
        with self._lock:
            self._nodes[key] = matrix
            while len(self._nodes) > self.cache_size:
                self._nodes.popitem(last=False)
        return matrix

    def _build_node(self, teff, logg):
        lines = self.lines
        atm = atmosphere(teff, logg, 0.0, 0.0)
        xh = scaled_abundances(np.zeros(1), np.zeros(1))
        s_ref = line_strengths(lines, atm, xh, self.band)[0].astype(float)
        widths = self.line_widths(atm)
        sigma, gamma = widths
        # strongest plausible line: atoms up to [X/H] = +1, molecules up to ~+1 in both elements
        s_max = s_ref * np.where(self._is_molecule, 10.0, np.where(self._is_hydrogen, 3.0, 10.0))
        peak = voigt(np.zeros_like(sigma), sigma, gamma)
        keep = s_max * peak > ETA_FLOOR
        wing = np.sqrt(s_max * gamma / (np.pi * ETA_FLOOR))
        cap = np.where(self._is_hydrogen, self.hydrogen_window_cap,
                       np.where(self._is_molecule, self.molecule_window_cap, self.window_cap))
        core = sigma * (np.sqrt(2.0 * np.log(np.maximum(s_max * peak / ETA_FLOOR, 1.0))) + 3.0)
        half = np.minimum(np.maximum(core, wing), cap)
        fine = self.spectrograph.fine_wavelength
        lo = np.searchsorted(fine, lines.wavelength - half)
        hi = np.searchsorted(fine, lines.wavelength + half)
        counts = np.where(keep, hi - lo, 0)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        rows = np.repeat(np.arange(len(lines)), counts)
        cols = lo[rows] + (np.arange(indptr[-1]) - indptr[rows])
        values = voigt(fine[cols] - lines.wavelength[rows], sigma[rows], gamma[rows])
        matrix = sparse.csr_matrix((values.astype(np.float32), cols, indptr),
                                   shape=(len(lines), fine.size))
        return matrix.T.tocsr()  # (n_fine, n_lines): eta = M @ strengths.T

    def line_widths(self, atm: Atmosphere):
        """Gaussian sigma and Lorentzian HWHM [A] of every line for one reference atmosphere."""
        lines = self.lines
        T, Pe = float(atm.T[0]), float(atm.Pe[0])
        n_h = float(atm.f_h_atom[0] * atm.P_HN[0]) / (K_BOLTZ * T)
        n_e = Pe / (K_BOLTZ * T)
        xi = float(atm.xi[0])
        v_dopp = np.sqrt(2.0 * K_BOLTZ * T / (self._mass * AMU) / 1e10 + xi**2)  # km/s
        sigma = lines.wavelength * v_dopp / C_KMS / np.sqrt(2.0)
        gamma_rad = 2.223e15 / lines.wavelength**2
        gamma = (gamma_rad + 10.0**lines.log_gamma6 * n_h * (T / 1e4) ** 0.3
                 + 10.0**lines.log_gamma4 * n_e)
        hwhm = DAMP_TO_A * lines.wavelength**2 * gamma
        hyd = self._is_hydrogen
        if hyd.any() and atm.deep is not None:
            n_e = float(atm.deep.Pe[0]) / (K_BOLTZ * float(atm.deep.T[0]))
            dn2 = lines.n_up[hyd].astype(float) ** 2 - lines.n_low[hyd].astype(float) ** 2
            hwhm[hyd] += STARK_H * lines.wavelength[hyd] ** 2 * dn2 * n_e ** (2.0 / 3.0)
        return sigma, hwhm

    # -- rendering ------------------------------------------------------------
    def lattice_position(self, teff, logg):
        """Lattice cell (i, j) and fractional position (fx, fy) of each star (snapped at nodes)."""
        u = (np.asarray(teff, dtype=float) - self.teff0) / self.dteff
        v = (np.asarray(logg, dtype=float) - self.logg0) / self.dlogg
        i = np.floor(u + 1e-9).astype(int)
        j = np.floor(v + 1e-9).astype(int)
        fx = u - i
        fy = v - j
        fx[np.abs(fx) < 1e-9] = 0.0
        fy[np.abs(fy) < 1e-9] = 0.0
        return i, j, np.clip(fx, 0.0, 1.0), np.clip(fy, 0.0, 1.0)

    def render(self, teff, logg, feh, afe, xh: dict, progress=None) -> np.ndarray:
        """Noiseless continuum-normalised spectra, float32 (n, n_pixels).

        Stars are grouped by lattice cell; within a cell eta = sum over the 4 corner nodes of
        weight x (profile matrix @ strengths).
        """
        teff = np.atleast_1d(np.asarray(teff, dtype=float))
        n = teff.size
        logg = np.broadcast_to(np.asarray(logg, dtype=float), (n,))
        feh = np.broadcast_to(np.asarray(feh, dtype=float), (n,))
        afe = np.broadcast_to(np.asarray(afe, dtype=float), (n,))
        atm = atmosphere(teff, logg, feh, afe)
        dmax = max_depth(teff, 0.5 * (self.band[0] + self.band[1])).astype(np.float32)
        i, j, fx, fy = self.lattice_position(teff, logg)
        out = np.empty((n, self.spectrograph.n_pixels), dtype=np.float32)
        key = i.astype(np.int64) * 100000 + j
        order = np.lexsort((j, i))
        groups = np.split(order, np.flatnonzero(np.diff(key[order])) + 1)
        done = 0
        for index in groups:
            if index.size == 0:
                continue
            gi, gj = int(i[index[0]]), int(j[index[0]])
            xh_g = {el: np.broadcast_to(v, (n,))[index] for el, v in xh.items()}
            strengths = line_strengths(self.lines, atm.subset(index), xh_g, self.band)
            eta = None
            corners = ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy))
            for di, dj, w in corners:
                w = w[index]
                if not np.any(w > 0):
                    continue
                s = strengths if np.all(w == 1.0) else strengths * w[:, None].astype(np.float32)
                part = self.node_matrix(gi + di, gj + dj) @ np.ascontiguousarray(s.T)
                eta = part if eta is None else eta + part
            depth = eta / (1.0 + eta)
            depth *= dmax[index][None, :]
            out[index] = 1.0 - self.spectrograph.convolve(depth).T
            done += index.size
            if progress is not None:
                progress(done, n)
        return out
