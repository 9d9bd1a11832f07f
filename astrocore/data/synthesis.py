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

Everything is deterministic and uses no global random state.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import dawsn, voigt_profile

from .dataset import DataError, Dataset

# ----------------------------------------------------------------------------- constants (cgs)
K_BOLTZ = 1.380649e-16  # erg / K
AMU = 1.66053907e-24  # g
C_KMS = 2.99792458e5  # km / s
HC_OVER_K = 1.438777  # cm K (second radiation constant)
CM1_TO_EV = 1.239842e-4  # eV per cm^-1
# pi e^2 / (m_e c^2) expressed so that sigma_int [cm^2 Angstrom] = LINE_CROSS * gf * lambda_A^2
LINE_CROSS = 8.8528e-21
SIGMA_THOMSON = 6.6524e-25  # cm^2
# Lorentzian HWHM in Angstrom = DAMP_TO_A * lambda_A^2 * gamma[s^-1] (gamma = FWHM angular width)
DAMP_TO_A = 1e-8 / (4.0 * np.pi * 2.99792458e10)

TAU_LINE = 0.1  # tau_5000 of the representative line-forming layer
TAU_DEEP = 0.5  # tau_5000 of the deeper layer where hydrogen lines (n >= 3 levels) form
TAU_TOP = 1e-4  # start of the hydrostatic integration
N_TAU = 10  # hydrostatic integration steps
MU_PER_H = 1.37  # mean mass per hydrogen nucleus (amu) for solar-like helium and metals
A_HE = 0.085  # helium abundance by number relative to hydrogen
STARK_H = 5.0e-20  # hydrogen linear-Stark HWHM [A] = STARK_H * lambda_A^2 * (n_u^2 - n_l^2) * Ne^(2/3)
# calibration of the single-layer approximation (log10 factor on every eta_int): the continuum opacity
# of the whole line-forming region exceeds that of the single layer; set so that the solar Ca II 8542
# equivalent width is ~3.7 A and Fe I 8688.6 ~0.25 A with their laboratory log gf values.
LOG_LINE_SCALE = -0.95
ETA_FLOOR = 3e-4  # line opacity ratio below which profile wings are cut (flux effect < 3e-4)

# ----------------------------------------------------------------------------- elements
# symbol: (log eps solar [Asplund et al. 2009], mass [amu], first ionisation potential [eV],
#          partition function U_I, U_II (constants, representative of 3000-8000 K))
ELEMENTS = {
    "H": (12.00, 1.008, 13.598, 2.0, 1.0),
    "C": (8.43, 12.011, 11.260, 9.3, 6.0),
    "N": (7.83, 14.007, 14.534, 4.1, 9.0),
    "O": (8.69, 15.999, 13.618, 8.9, 4.0),
    "Na": (6.24, 22.990, 5.139, 2.0, 1.0),
    "Mg": (7.60, 24.305, 7.646, 1.0, 2.0),
    "Al": (6.45, 26.982, 5.986, 5.8, 1.0),
    "Si": (7.51, 28.086, 8.152, 9.4, 5.7),
    "S": (7.12, 32.060, 10.360, 8.7, 4.0),
    "K": (5.03, 39.098, 4.341, 2.0, 1.0),
    "Ca": (6.34, 40.078, 6.113, 1.2, 2.2),
    "Ti": (4.95, 47.867, 6.828, 30.0, 50.0),
    "V": (3.93, 50.942, 6.746, 40.0, 30.0),
    "Cr": (5.64, 51.996, 6.767, 9.5, 6.5),
    "Mn": (5.43, 54.938, 7.434, 6.5, 7.5),
    "Fe": (7.50, 55.845, 7.902, 27.0, 42.0),
    "Co": (4.99, 58.933, 7.881, 30.0, 28.0),
    "Ni": (6.22, 58.693, 7.640, 29.0, 10.0),
}
METALS = tuple(el for el in ELEMENTS if el != "H")
ALPHA_ELEMENTS = ("O", "Mg", "Si", "S", "Ca", "Ti")
# the electron donors that set Pe (hydrogen plus the abundant, easily ionised metals)
ELECTRON_DONORS = ("H", "C", "Na", "Mg", "Al", "Si", "K", "Ca", "Ti", "Cr", "Fe", "Ni")

# molecules: (atoms, D0 [eV], B_e [cm^-1], omega_e [cm^-1], electronic weight, symmetry number)
MOLECULES = {
    "H2": (("H", "H"), 4.478, 60.853, 4401.2, 1.0, 2.0),
    "CO": (("C", "O"), 11.092, 1.9313, 2169.8, 1.0, 1.0),
    "CN": (("C", "N"), 7.72, 1.8997, 2068.6, 2.0, 1.0),
    "OH": (("O", "H"), 4.392, 18.911, 3737.8, 4.0, 1.0),
    "TiO": (("Ti", "O"), 6.87, 0.5354, 1009.2, 6.0, 1.0),
}


@dataclass(frozen=True)
class Species:
    """One absorber: an atom in a given ionisation stage, hydrogen, or a diatomic molecule."""

    name: str
    kind: str  # "atom", "hydrogen" or "molecule"
    element: str  # the element whose abundance scales the lines ("" for molecules)
    stage: int  # 0 neutral, 1 singly ionised
    mass: float  # amu


def _build_species() -> tuple[Species, ...]:
    species = [Species("H I", "hydrogen", "H", 0, ELEMENTS["H"][1])]
    for el in METALS:
        species.append(Species(f"{el} I", "atom", el, 0, ELEMENTS[el][1]))
        species.append(Species(f"{el} II", "atom", el, 1, ELEMENTS[el][1]))
    for mol in ("CO", "CN", "OH", "TiO"):
        mass = sum(ELEMENTS[a][1] for a in MOLECULES[mol][0])
        species.append(Species(mol, "molecule", "", 0, mass))
    return tuple(species)


SPECIES = _build_species()
SPECIES_INDEX = {sp.name: i for i, sp in enumerate(SPECIES)}


def species_elements(name: str) -> tuple[str, ...]:
    """The elements whose abundance changes the lines of species ``name`` (e.g. CN -> (C, N))."""
    sp = SPECIES[SPECIES_INDEX[name]]
    if sp.kind == "molecule":
        return tuple(a for a in MOLECULES[name][0] if a != "H")
    return (sp.element,)


# ----------------------------------------------------------------------------- air / vacuum
def _air_index(wavelength_vac):
    """Refractive index of standard air (Morton 2000 / Ciddor 1996) at vacuum wavelength [A]."""
    s2 = (1e4 / np.asarray(wavelength_vac, dtype=float)) ** 2
    return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)


def vacuum_to_air(wavelength_vac):
    """Air wavelength [A] of a vacuum wavelength [A]."""
    wavelength_vac = np.asarray(wavelength_vac, dtype=float)
    return wavelength_vac / _air_index(wavelength_vac)


def air_to_vacuum(wavelength_air):
    """Vacuum wavelength [A] of an air wavelength [A] (fixed-point inversion of vacuum_to_air)."""
    wavelength_air = np.asarray(wavelength_air, dtype=float)
    vac = wavelength_air * 1.000274
    for _ in range(4):
        vac = wavelength_air * _air_index(vac)
    return vac


# ----------------------------------------------------------------------------- line lists
@dataclass
class LineList:
    """Atomic and molecular line data, one entry per line (all arrays of equal length).

    wavelength [A] (in the medium of the spectrograph), species (index into :data:`SPECIES`),
    chi: lower-level excitation energy [eV], loggf, log_gamma6: van der Waals width per neutral H
    perturber [cm^3 s^-1, log10], log_gamma4: quadratic Stark width per electron [log10],
    n_low/n_up: principal quantum numbers (hydrogen only, else 0), label: a short name for the
    named (real) lines, "" for the pseudo list.
    """

    wavelength: np.ndarray
    species: np.ndarray
    chi: np.ndarray
    loggf: np.ndarray
    log_gamma6: np.ndarray
    log_gamma4: np.ndarray
    n_low: np.ndarray
    n_up: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return int(self.wavelength.size)

    @classmethod
    def make(cls, wavelength, species, chi, loggf, log_gamma6=None, log_gamma4=None, n_low=None,
             n_up=None, label=None) -> "LineList":
        """Build a line list; ``species`` may be names or indices; defaults fill the widths."""
        wavelength = np.atleast_1d(np.asarray(wavelength, dtype=float))
        n = wavelength.size
        species = np.atleast_1d(species)
        if species.dtype.kind in "US":
            species = np.array([SPECIES_INDEX[str(s)] for s in species], dtype=np.int32)
        species = np.broadcast_to(species.astype(np.int32), (n,)).copy()

        def full(value, default):
            return np.broadcast_to(np.asarray(default if value is None else value, dtype=float),
                                   (n,)).copy()

        return cls(
            wavelength=wavelength,
            species=species,
            chi=full(chi, 0.0),
            loggf=full(loggf, 0.0),
            log_gamma6=full(log_gamma6, -7.6),
            log_gamma4=full(log_gamma4, -5.5),
            n_low=full(n_low, 0).astype(np.int32),
            n_up=full(n_up, 0).astype(np.int32),
            label=np.broadcast_to(np.asarray("" if label is None else label, dtype="<U24"),
                                  (n,)).copy(),
        )

    @classmethod
    def concatenate(cls, lists) -> "LineList":
        """One line list from several, sorted by wavelength."""
        fields = cls.__dataclass_fields__
        merged = {name: np.concatenate([getattr(ll, name) for ll in lists]) for name in fields}
        order = np.argsort(merged["wavelength"], kind="stable")
        return cls(**{name: values[order] for name, values in merged.items()})

    def select(self, mask) -> "LineList":
        """The lines where ``mask`` is true."""
        return LineList(**{name: getattr(self, name)[mask] for name in self.__dataclass_fields__})

    def species_names(self) -> np.ndarray:
        """Species name of every line."""
        names = np.array([sp.name for sp in SPECIES])
        return names[self.species]


def pseudo_atomic_lines(wl_min, wl_max, n_lines, seed, species_weights, chi_model, loggf_model):
    """A deterministic pseudo line list of ``n_lines`` atomic lines between ``wl_min`` and ``wl_max``.

    Stand-in for the many weak lines of a real list (no line database is available offline):
    positions are uniform, species are drawn with ``species_weights`` ({name: weight}); the lower
    excitation potential and log gf are drawn by ``chi_model(rng, name, n)`` and
    ``loggf_model(rng, name, chi)`` (log gf may depend on the excitation potential). The generator
    is seeded with the fixed ``seed`` (part of the simulator version), never with the user's seed,
    so every call sees the same lines.
    """
    rng = np.random.default_rng(seed)
    names = list(species_weights)
    weights = np.array([species_weights[s] for s in names], dtype=float)
    choice = rng.choice(len(names), size=n_lines, p=weights / weights.sum())
    wavelength = rng.uniform(wl_min, wl_max, n_lines)
    chi = np.zeros(n_lines)
    loggf = np.zeros(n_lines)
    for k, name in enumerate(names):
        sel = choice == k
        chi[sel] = chi_model(rng, name, int(sel.sum()))
        loggf[sel] = loggf_model(rng, name, chi[sel])
    # van der Waals widths grow with the size of the excited orbitals (ABO theory): high-excitation
    # lines, which dominate the H band, are broader than resonance-like ones
    log_gamma6 = -7.7 + 0.12 * chi + 0.15 * rng.standard_normal(n_lines)
    log_gamma4 = -5.5 + 0.3 * rng.standard_normal(n_lines)
    return LineList.make(wavelength, np.array(names)[choice], chi, loggf, log_gamma6, log_gamma4)


def hydrogen_lines(n_low, n_up_values, medium="air"):
    """Hydrogen series lines n_low -> n_up (Rydberg formula), Kramers oscillator strengths.

    gf = 2 n_low^2 f with f from Kramers' formula times a Gaunt factor 0.9 (good to a few per cent
    for the Paschen and Brackett lines); chi is the excitation energy of level n_low.
    """
    n_up = np.asarray(n_up_values, dtype=float)
    inv = 1.0 / n_low**2 - 1.0 / n_up**2
    wl_vac = 1e8 / (109677.58 * inv)
    f = 0.9 * 32.0 / (3.0 * np.sqrt(3.0) * np.pi) / (n_low**5 * n_up**3) / inv**3
    gf = 2.0 * n_low**2 * f
    chi = 13.598 * (1.0 - 1.0 / n_low**2)
    wl = vacuum_to_air(wl_vac) if medium == "air" else wl_vac
    series = {3: "P", 4: "Br"}.get(n_low, "H")
    labels = [f"H I {series}{int(n)}" for n in n_up]
    return LineList.make(wl, "H I", chi, np.log10(gf), -7.0, -5.0, n_low, n_up.astype(int), labels)


def diatomic_band_lines(species, nu00, upper, lower, bands, branches, j_max, spin_components,
                        medium, wl_range, lambda_doubling=0.0):
    """Rotational lines of diatomic bands from molecular constants (a realistic band structure).

    ``upper``/``lower``: dicts with we, wexe, (optional weye), Be, ae, De [cm^-1] of the two states;
    ``nu00``: the (0,0) band origin [cm^-1] (0 for vibration-rotation bands within one state);
    ``bands``: list of (v_upper, v_lower, f_band); ``branches``: {name: (dJ, Hoenl-London function
    of J'')}; ``spin_components``: list of (line shift [cm^-1] per (J''+0.5), lower-level energy
    offset [cm^-1], weight) sub-bands; ``lambda_doubling``: splitting [cm^-1] per (J''+0.5) that
    doubles each line. gf = f_band * HL(J''), the lower-level energy (vibration + rotation) is chi.
    Returns the lines that fall in ``wl_range`` (Angstrom, in ``medium``).
    """
    def G(state, v):
        return (state["we"] * (v + 0.5) - state["wexe"] * (v + 0.5) ** 2
                + state.get("weye", 0.0) * (v + 0.5) ** 3)

    def F(state, v, J):
        Bv = state["Be"] - state["ae"] * (v + 0.5)
        return Bv * J * (J + 1.0) - state["De"] * (J * (J + 1.0)) ** 2

    J = np.arange(0, j_max + 1, dtype=float)
    wl_all, chi_all, gf_all = [], [], []
    for v_u, v_l, f_band in bands:
        origin = nu00 + (G(upper, v_u) - G(upper, 0)) - (G(lower, v_l) - G(lower, 0))
        e_vib = G(lower, v_l) - G(lower, 0)
        for dJ, hl in branches.values():
            Ju = J + dJ
            ok = Ju >= 0
            Jl = J[ok]
            Ju = Ju[ok]
            hl_values = hl(Jl)
            good = hl_values > 0
            Jl, Ju, hl_values = Jl[good], Ju[good], hl_values[good]
            nu = origin + F(upper, v_u, Ju) - F(lower, v_l, Jl)
            e_low = e_vib + F(lower, v_l, Jl)
            for shift, e_offset, weight in spin_components:
                doublets = [0.0] if lambda_doubling == 0 else [-0.5, 0.5]
                for side in doublets:
                    nu_line = nu + shift * (Jl + 0.5) + side * lambda_doubling * (Jl + 0.5)
                    wl_all.append(1e8 / nu_line)
                    chi_all.append((e_low + e_offset) * CM1_TO_EV)
                    gf_all.append(f_band * weight * hl_values / len(doublets))
    wl = np.concatenate(wl_all)
    if medium == "air":
        wl = vacuum_to_air(wl)
    chi = np.concatenate(chi_all)
    gf = np.concatenate(gf_all)
    keep = (wl > wl_range[0]) & (wl < wl_range[1]) & (gf > 0)
    return LineList.make(wl[keep], species, chi[keep], np.log10(gf[keep]), -7.5, -5.5)


# ----------------------------------------------------------------------------- labels and noise
def label_values(labels, name) -> np.ndarray:
    """Column ``name`` of a labels dict or astropy Table as a finite float array (at least 1-d)."""

    try:
        values = labels[name]
    except (KeyError, IndexError, ValueError):
        names = labels.colnames if hasattr(labels, "colnames") else list(labels)
        raise DataError(f"labels need a '{name}' column; got {names}.") from None
    values = np.atleast_1d(np.asarray(values, dtype=float))
    if not np.all(np.isfinite(values)):
        raise DataError(f"label '{name}' contains NaN or infinite values.")
    return values


def label_arrays(labels, names) -> list[np.ndarray]:
    """Columns ``names`` of ``labels`` as float arrays of one common length (scalars broadcast)."""

    values = [label_values(labels, name) for name in names]
    n = max(v.size for v in values)
    for name, v in zip(names, values):
        if v.size not in (1, n):
            raise DataError(f"label '{name}' has {v.size} values but other labels have {n}.")
    return [np.broadcast_to(v, (n,)).astype(float) for v in values]


def add_noise(spectra: np.ndarray, snr: float, rng, chunk: int = 4096) -> np.ndarray:
    """Add Gaussian noise of sigma 1/snr (continuum units) in place, chunk by chunk (float32)."""
    for start in range(0, len(spectra), chunk):
        block = spectra[start:start + chunk]
        block += rng.standard_normal(block.shape, dtype=np.float32) / np.float32(snr)
    return spectra


def check_snr(snr):
    """``snr`` as a float, or None; anything else is a DataError."""
    if snr is not None and not (np.isfinite(snr) and snr > 0):
        raise DataError(f"snr must be a positive number or None; got {snr!r}.")
    return None if snr is None else float(snr)


def simulated_dataset(spectra: np.ndarray, wavelength: np.ndarray, table, generator: str, version: str,
                      seed: int, params: dict, snr, noise_rng):
    """The simulators' common ending: optional noise at ``snr`` (errors = 1/snr), provenance and
    the Dataset."""
    errors = None
    if snr is not None:
        spectra = add_noise(spectra, float(snr), noise_rng)
        errors = np.full_like(spectra, 1.0 / float(snr))
    provenance = {"generator": generator, "version": version, "seed": int(seed), "params": params,
                  "continuum_normalised": True}
    return Dataset(spectra, wavelength, table, errors, provenance)


# ----------------------------------------------------------------------------- abundances
def scaled_abundances(feh, afe, overrides=None) -> dict:
    """[X/H] of every metal: [Fe/H] for all, + [alpha/Fe] for the alpha elements, then overrides.

    ``overrides``: {element: [X/H] array} replaces individual elements (e.g. from [X/Fe] labels).
    """
    feh = np.asarray(feh, dtype=float)
    afe = np.broadcast_to(np.asarray(afe, dtype=float), feh.shape)
    xh = {el: feh + (afe if el in ALPHA_ELEMENTS else 0.0) for el in METALS}
    for el, value in (overrides or {}).items():
        xh[el] = np.broadcast_to(np.asarray(value, dtype=float), feh.shape)
    return xh


# ----------------------------------------------------------------------------- atmosphere
def _saha_phi(T, ionisation_ev, u0, u1):
    """Saha's Phi(T) = Pe N_II / N_I [dyn cm^-2] (Gray eq. 1.20 form)."""
    return 0.6665 * (u1 / u0) * T**2.5 * 10.0 ** (-5040.0 * ionisation_ev / T)


def molecular_partition(name, T):
    """Rotational x vibrational x electronic partition function of a diatomic molecule."""
    _, _, B, we, ge, sym = MOLECULES[name]
    return ge * 0.695 * T / (B * sym) / (1.0 - np.exp(-HC_OVER_K * we / T))


def dissociation_constant(name, T):
    """K_p = P_A P_B / P_AB [dyn cm^-2] from statistical mechanics; rises steeply ~10**(-theta D0)."""
    atoms, D0, _, _, _, _ = MOLECULES[name]
    m_a, m_b = ELEMENTS[atoms[0]][1], ELEMENTS[atoms[1]][1]
    mu = m_a * m_b / (m_a + m_b)
    u_a, u_b = ELEMENTS[atoms[0]][3], ELEMENTS[atoms[1]][3]
    return (2.589e4 * mu**1.5 * T**2.5 * u_a * u_b / molecular_partition(name, T)
            * 10.0 ** (-5040.0 * D0 / T))


_HM_BF = (1.99654, -1.18267e-5, 2.64243e-6, -4.40524e-10, 3.23992e-14, -1.39568e-18, 2.78701e-23)


def continuous_opacity(T, Pe, f_h_atom, P_HN, wavelength):
    """Continuous opacity per hydrogen nucleus [cm^2] at ``wavelength`` [A] (Gray, chapter 8).

    H- bound-free and free-free (both proportional to Pe), neutral hydrogen bound-free and
    free-free (important in hot stars), Rayleigh scattering on H and Thomson scattering on electrons.
    ``f_h_atom`` is the fraction of hydrogen nuclei in neutral atoms.
    """
    lam = float(wavelength)
    theta = 5040.0 / T
    stim = 1.0 - 10.0 ** (-theta * 12398.4 / lam)
    # H- bound-free (threshold 16419 A)
    if lam < 16300.0:
        alpha = sum(c * lam**k for k, c in enumerate(_HM_BF)) * 1e-18
        hm_bf = 4.158e-10 * alpha * Pe * theta**2.5 * 10.0 ** (0.754 * theta) * stim
    else:
        hm_bf = 0.0
    # H- free-free (Bell & Berrington 1987 fit as in Gray)
    lg = np.log10(lam)
    f0 = -2.2763 - 1.6850 * lg + 0.76661 * lg**2 - 0.053346 * lg**3
    f1 = 15.2827 - 9.2846 * lg + 1.99381 * lg**2 - 0.142631 * lg**3
    f2 = -197.789 + 190.266 * lg - 67.9775 * lg**2 + 10.6913 * lg**3 - 0.625151 * lg**4
    lt = np.log10(theta)
    hm_ff = 1e-26 * Pe * 10.0 ** (f0 + f1 * lt + f2 * lt**2)
    # neutral hydrogen bound-free from levels n >= n0 (+ the sum over higher levels) and free-free
    ion = 13.598
    alpha0 = 1.0449e-26 * lam**3
    n0 = int(np.floor(np.sqrt(lam / 911.27))) + 1
    h_bf = 0.0
    for n in range(n0, n0 + 3):
        h_bf = h_bf + alpha0 / n**3 * 10.0 ** (-theta * ion * (1.0 - 1.0 / n**2))
    loge = 0.43429
    h_bf = h_bf + alpha0 * loge / (2.0 * theta * ion) * (
        10.0 ** (-theta * ion * (1.0 - 1.0 / (n0 + 3) ** 2)) - 10.0 ** (-theta * ion))
    h_ff = alpha0 * loge / (2.0 * theta * ion) * 10.0 ** (-theta * ion)
    h_bfff = (h_bf + h_ff) * stim
    rayleigh = 5.799e-13 / lam**4 + 1.422e-6 / lam**6 + 2.784 / lam**8
    return f_h_atom * (hm_bf + hm_ff + h_bfff + rayleigh) + SIGMA_THOMSON * Pe / P_HN


@dataclass
class Atmosphere:
    """The representative line-forming layer of each star (arrays of shape (n,))."""

    teff: np.ndarray
    logg: np.ndarray
    feh: np.ndarray
    afe: np.ndarray
    T: np.ndarray  # layer temperature [K]
    Pg: np.ndarray  # gas pressure [dyn cm^-2]
    Pe: np.ndarray  # electron pressure [dyn cm^-2]
    P_HN: np.ndarray  # partial pressure of hydrogen nuclei (as if atomic) [dyn cm^-2]
    f_h_atom: np.ndarray  # fraction of H nuclei in neutral atoms (after ionisation and H2)
    xi: np.ndarray  # microturbulence [km/s]
    deep: "Atmosphere | None" = None  # the deeper layer (TAU_DEEP) for hydrogen lines

    @property
    def theta(self):
        return 5040.0 / self.T

    def subset(self, index) -> "Atmosphere":
        values = {k: getattr(self, k)[index] for k in self.__dataclass_fields__ if k != "deep"}
        return Atmosphere(**values, deep=None if self.deep is None else self.deep.subset(index))


def microturbulence(logg):
    """Microturbulent velocity [km/s]: ~1 km/s in dwarfs rising to ~2.5 km/s in luminous giants."""
    return np.clip(2.478 - 0.325 * np.asarray(logg, dtype=float), 0.8, 2.8)


def grey_temperature(teff, tau):
    """Eddington grey temperature law T^4 = 3/4 Teff^4 (tau + 2/3)."""
    return teff * (0.75 * (tau + 2.0 / 3.0)) ** 0.25


def _hydrogen_state(T, Pe, P_HN):
    """Fraction of H nuclei that are neutral atoms, after ionisation (Saha) and H2 formation."""
    h = ELEMENTS["H"]
    x_h = _saha_phi(T, h[2], h[3], h[4]) / Pe
    p_h0 = P_HN / (1.0 + x_h)  # neutral hydrogen (atoms + 2 H2) partial pressure
    k_h2 = dissociation_constant("H2", T)
    p_h = 2.0 * p_h0 / (1.0 + np.sqrt(1.0 + 8.0 * p_h0 / k_h2))
    return p_h / P_HN


def _donor_tables(T, feh, afe):
    """Abundances (relative to H) and Saha Phi of the electron donors, shape (n, n_donors)."""
    A, phi = [], []
    for el in ELECTRON_DONORS:
        log_eps, _, ion, u0, u1 = ELEMENTS[el]
        scale = 0.0 if el == "H" else feh + (afe if el in ALPHA_ELEMENTS else 0.0)
        A.append(10.0 ** (log_eps - 12.0 + scale) * np.ones_like(T))
        phi.append(_saha_phi(T, ion, u0, u1))
    return np.stack(A, axis=1), np.stack(phi, axis=1)


def _solve_pe(Pg, A, phi, pe_start, n_iter=6):
    """Electron pressure from charge conservation, Newton iterations in ln Pe (Gray eq. 9.8).

    Pe = Pg * sum_j A_j x_j/(1+x_j) / (A_He + sum_j A_j (1 + x_j/(1+x_j))), x_j = Phi_j / Pe.
    """
    y = np.log(pe_start)
    den0 = A_HE
    for _ in range(n_iter):
        x = phi / np.exp(y)[:, None]
        ion = x / (1.0 + x)
        num = (A * ion).sum(axis=1)
        den = den0 + (A * (1.0 + ion)).sum(axis=1)
        d = (A * x / (1.0 + x) ** 2).sum(axis=1)
        slope = -d / num + d / den  # d ln(num/den) / d ln Pe
        residual = y - np.log(Pg * num / den)
        y = y - residual / (1.0 - slope)
        y = np.minimum(y, np.log(0.5 * Pg))
    return np.exp(y)


def _kappa_mass_5000(T, Pg, Pe, A):
    """Continuous opacity per gram at 5000 A (the tau scale of the hydrostatic integration)."""
    P_HN = (Pg - Pe) / (A.sum(axis=1) + A_HE)
    f_atom = _hydrogen_state(T, Pe, P_HN)
    kappa_h = continuous_opacity(T, Pe, f_atom, P_HN, 5000.0)
    return kappa_h / (MU_PER_H * AMU), P_HN, f_atom


def atmosphere(teff, logg, feh, afe) -> Atmosphere:
    """Solve the hydrostatic single-layer model for arrays of (Teff [K], log g, [Fe/H], [a/Fe]).

    Integrates dPg/dln(tau) = g tau / kappa(T(tau), Pe) from TAU_TOP to TAU_LINE (second-order
    Runge-Kutta in ln tau), with Pe from charge conservation at every step, then on to TAU_DEEP:
    the returned layer is at TAU_LINE and its ``deep`` attribute holds the layer at TAU_DEEP, where
    the high-excitation hydrogen lines (and their Stark wings) form.
    """
    teff = np.atleast_1d(np.asarray(teff, dtype=float))
    logg = np.broadcast_to(np.asarray(logg, dtype=float), teff.shape).astype(float)
    feh = np.broadcast_to(np.asarray(feh, dtype=float), teff.shape).astype(float)
    afe = np.broadcast_to(np.asarray(afe, dtype=float), teff.shape).astype(float)
    g = 10.0**logg
    A, _ = _donor_tables(teff, feh, afe)

    def state(tau, Pg, pe_start, n_iter=6):
        T = grey_temperature(teff, tau)
        _, phi = _donor_tables(T, feh, afe)
        Pe = _solve_pe(Pg, A, phi, pe_start, n_iter)
        kappa, P_HN, f_atom = _kappa_mass_5000(T, Pg, Pe, A)
        return T, Pe, kappa, P_HN, f_atom

    def integrate(taus, Pg, Pe):
        for t0, t1 in zip(taus[:-1], taus[1:]):
            h = np.log(t1 / t0)
            _, Pe, k0, _, _ = state(t0, Pg, Pe)
            Pg_mid = Pg + 0.5 * h * g * t0 / k0
            tm = np.sqrt(t0 * t1)
            _, Pe_mid, km, _, _ = state(tm, Pg_mid, Pe)
            Pg = Pg + h * g * tm / km
            Pe = Pe_mid
        return Pg, Pe

    def layer(tau, Pg, Pe):
        T, Pe, _, P_HN, f_atom = state(tau, Pg, Pe, n_iter=10)
        return Atmosphere(teff, logg, feh, afe, T, Pg, Pe, P_HN, f_atom, microturbulence(logg))

    # start: Pg = g tau / kappa(Pg) at the top, by damped fixed-point iterations
    Pg = g * TAU_TOP / 0.01
    Pe = 1e-4 * Pg
    for _ in range(8):
        _, Pe, kappa, _, _ = state(TAU_TOP, Pg, Pe)
        Pg = np.exp(np.log(Pg) / 3.0 + 2.0 / 3.0 * np.log(g * TAU_TOP / kappa))
    Pg, Pe = integrate(np.geomspace(TAU_TOP, TAU_LINE, N_TAU + 1), Pg, Pe)
    line_layer = layer(TAU_LINE, Pg, Pe)
    Pg, Pe = integrate(np.geomspace(TAU_LINE, TAU_DEEP, 4), Pg, line_layer.Pe)
    line_layer.deep = layer(TAU_DEEP, Pg, Pe)
    return line_layer


# ----------------------------------------------------------------------------- number densities
def species_log_populations(atm: Atmosphere, xh: dict) -> np.ndarray:
    """log10 (N_species / N_H nuclei / U_species) for every species, shape (n_stars, n_species).

    Atoms: abundance x ionisation fraction (Saha, with the star's Pe) / partition function; C, O and
    Ti are reduced by what CO and TiO lock up. Molecules: dissociation equilibrium (CO solved
    exactly for the C and O budget, then CN, OH and TiO) / molecular partition function.
    Hydrogen: neutral atomic fraction / U = 2 (the level populations are in gf and chi).
    """
    T, Pe, P_HN = atm.T, atm.Pe, atm.P_HN
    n = T.size
    out = np.full((n, len(SPECIES)), -99.0)
    abund = {el: 10.0 ** (ELEMENTS[el][0] - 12.0 + xh[el]) for el in METALS}
    p_h = atm.f_h_atom * P_HN
    # CO equilibrium: x = free C, y = free O, CO = x y / K; x + CO = a, y + CO = b
    a, b = abund["C"] * P_HN, abund["O"] * P_HN
    K_co = dissociation_constant("CO", T)
    c1 = K_co + b - a
    c2 = K_co + a - b
    o_rich = c1 >= 0
    with np.errstate(divide="ignore", invalid="ignore"):  # each root is used where it is stable
        x_c = 2.0 * a * K_co / (c1 + np.sqrt(c1**2 + 4.0 * a * K_co))  # free C, O-rich
        y_o = 2.0 * b * K_co / (c2 + np.sqrt(c2**2 + 4.0 * b * K_co))  # free O, C-rich
    p_c = np.where(o_rich, x_c, a - b + y_o)
    p_o = np.where(o_rich, b - a + x_c, y_o)
    p_co = np.where(o_rich, a - x_c, b - y_o)
    # titanium: neutral, ionised and in TiO
    ti = ELEMENTS["Ti"]
    x_ti = _saha_phi(T, ti[2], ti[3], ti[4]) / Pe
    r_tio = p_o / dissociation_constant("TiO", T)
    p_ti0 = abund["Ti"] * P_HN / (1.0 + x_ti + r_tio)
    p_n = abund["N"] * P_HN
    molecules = {
        "CO": p_co,
        "CN": p_c * p_n / dissociation_constant("CN", T),
        "OH": p_o * p_h / dissociation_constant("OH", T),
        "TiO": p_ti0 * r_tio,
    }
    free_fraction = {"C": p_c / a, "O": p_o / b}
    for k, sp in enumerate(SPECIES):
        if sp.kind == "hydrogen":
            out[:, k] = np.log10(atm.f_h_atom / 2.0)
        elif sp.kind == "atom":
            log_eps, _, ion, u0, u1 = ELEMENTS[sp.element]
            x = _saha_phi(T, ion, u0, u1) / Pe
            frac = (1.0 if sp.stage == 0 else x) / (1.0 + x)
            if sp.element == "Ti":
                frac = (1.0 if sp.stage == 0 else x_ti) / (1.0 + x_ti + r_tio)
            total = abund[sp.element] * free_fraction.get(sp.element, 1.0)
            out[:, k] = np.log10(np.maximum(total * frac, 1e-300)) - np.log10(u0 if sp.stage == 0 else u1)
        else:
            out[:, k] = (np.log10(np.maximum(molecules[sp.name] / P_HN, 1e-300))
                         - np.log10(molecular_partition(sp.name, T)))
    return out


def line_strengths(lines: LineList, atm: Atmosphere, xh: dict, band) -> np.ndarray:
    """Integrated line-to-continuum opacity ratio eta_int [A] of every line, shape (n, n_lines).

    ``band`` = (lambda_blue, lambda_red) [A]: the continuous opacity is computed at both ends and
    interpolated geometrically in wavelength for each line. Hydrogen lines are evaluated in the
    deeper layer ``atm.deep`` (when present): their lower levels (n = 3, 4; 12-13 eV) are populated
    in the hot, deep photosphere.
    """
    out = _layer_strengths(lines, atm, xh, band)
    hydrogen = lines.n_low > 0
    if atm.deep is not None and np.any(hydrogen):
        out[:, hydrogen] = _layer_strengths(lines.select(hydrogen), atm.deep, xh, band)
    return out


def _layer_strengths(lines: LineList, atm: Atmosphere, xh: dict, band) -> np.ndarray:
    logpop = species_log_populations(atm, xh)
    lam_b, lam_r = band
    kb = continuous_opacity(atm.T, atm.Pe, atm.f_h_atom, atm.P_HN, lam_b)
    kr = continuous_opacity(atm.T, atm.Pe, atm.f_h_atom, atm.P_HN, lam_r)
    x = np.clip((lines.wavelength - lam_b) / (lam_r - lam_b), 0.0, 1.0)
    lam_c = 0.5 * (lam_b + lam_r)
    stim = 1.0 - np.exp(-HC_OVER_K * 1e8 / (lam_c * atm.T))
    star_term = np.log10(stim)
    line_term = np.log10(LINE_CROSS * lines.wavelength**2) + lines.loggf + LOG_LINE_SCALE
    log_s = (logpop[:, lines.species] + line_term[None, :] + star_term[:, None]
             - np.outer(atm.theta, lines.chi)
             - np.outer(np.log10(kb), 1.0 - x) - np.outer(np.log10(kr), x))
    return (10.0 ** np.maximum(log_s, -30.0)).astype(np.float32)


def max_depth(teff, wavelength):
    """Milne-Eddington maximum line depth D_max = beta / (1 + beta) of the source-function slope.

    beta ~ d ln B_lambda / d tau ~ u / (1 - exp(-u)), u = h c / (lambda k T_surface): cool stars and
    short wavelengths have steeper source functions and deeper saturated lines.
    """
    u = HC_OVER_K * 1e8 / (wavelength * 0.84 * np.asarray(teff, dtype=float))
    beta = u / (1.0 - np.exp(-u))
    return beta / (1.0 + beta)


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
