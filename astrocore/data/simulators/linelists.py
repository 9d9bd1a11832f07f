"""Line lists for the line-synthesis engine: species and their atomic data, air / vacuum
wavelengths, and generators of pseudo-atomic, hydrogen and diatomic molecular band lines."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
