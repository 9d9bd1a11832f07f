"""A grey LTE model atmosphere for the line-synthesis engine: ionisation (Saha) and molecular
equilibria, continuous opacity, the electron pressure, and line strengths per layer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linelists import (A_HE, ALPHA_ELEMENTS, AMU, ELECTRON_DONORS, ELEMENTS, HC_OVER_K, LINE_CROSS, LOG_LINE_SCALE,
                        METALS, MOLECULES, MU_PER_H, N_TAU, SIGMA_THOMSON, SPECIES, TAU_DEEP, TAU_LINE, TAU_TOP,
                        LineList)


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
