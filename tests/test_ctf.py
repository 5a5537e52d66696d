"""CTF against RELION's getCTF formula, written out independently here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynamight_core.physics.ctf import CtfParameters, compute_ctf


def relion_ctf(
    u_a: float,
    v_a: float,
    angle_deg: float,
    kv: float,
    cs_mm: float,
    q0: float,
    phase_deg: float,
    bfactor: float,
    scale: float,
    box: int,
    pixel: float,
) -> np.ndarray:
    """RELION's CTF::getCTF on the rfft grid (float64), from ctf.h/ctf.cpp."""
    volts = kv * 1e3
    lam = 12.2643247 / np.sqrt(volts * (1.0 + volts * 0.978466e-6))
    cs = cs_mm * 1e7
    k1 = np.pi * lam
    k2 = np.pi / 2.0 * cs * lam**3
    k3 = np.arctan(q0 / np.sqrt(1.0 - q0 * q0))
    k4 = -bfactor / 4.0
    k5 = np.deg2rad(phase_deg)
    y = np.fft.fftfreq(box)[:, None] / pixel
    x = np.fft.rfftfreq(box)[None, :] / pixel
    u2 = x * x + y * y
    defocus_average = -(u_a + v_a) * 0.5
    defocus_deviation = -(u_a - v_a) * 0.5
    ellipse = np.arctan2(y, x) - np.deg2rad(angle_deg)
    deltaf = defocus_average + defocus_deviation * np.cos(2.0 * ellipse)
    deltaf = np.where(u2 == 0, 0.0, deltaf)
    argument = k1 * deltaf * u2 + k2 * u2 * u2 - k5 - k3
    return -np.sin(argument) * np.exp(k4 * u2) * scale


CASES = [
    # U (Å), V (Å), angle, kV, Cs, Q0, phase shift, B-factor, scale, pixel (Å)
    (15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0, 1.0),
    (25000.0, 24000.0, 123.0, 300.0, 2.7, 0.07, 0.0, 0.0, 1.0, 2.0),
    (8000.0, 8000.0, 0.0, 200.0, 0.01, 0.1, 90.0, 50.0, 0.8, 1.5),
    (12000.0, 13000.0, 75.0, 300.0, 2.7, 0.1, 0.0, 20.0, 1.0, 1.2),  # U < V
]


@pytest.mark.parametrize("case", CASES)
def test_matches_relion_formula(case: tuple[float, ...]) -> None:
    u_a, v_a, angle, kv, cs, q0, phase, bfactor, scale, pixel = case
    box = 64

    def one(value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float64)

    params = CtfParameters(
        one(u_a),
        one(v_a),
        one(angle),
        one(kv),
        one(cs),
        one(q0),
        one(phase),
        one(bfactor),
        one(scale),
    )
    ours = compute_ctf(params, box, pixel)[0].double().numpy()
    reference = relion_ctf(u_a, v_a, angle, kv, cs, q0, phase, bfactor, scale, box, pixel)
    assert np.abs(ours - reference).max() <= 1e-4


def test_angle_matters() -> None:
    """A wrong astigmatism angle convention (e.g. +90°) must be visible."""
    params = dict(u=20000.0, v=17000.0)
    reference = relion_ctf(params["u"], params["v"], 30.0, 300, 2.7, 0.1, 0, 0, 1, 64, 1.5)
    rotated = relion_ctf(params["u"], params["v"], 120.0, 300, 2.7, 0.1, 0, 0, 1, 64, 1.5)
    assert np.abs(reference - rotated).max() > 0.5


def test_batch_shape_and_dc_value() -> None:
    n = 3
    ones = torch.ones(n, dtype=torch.float64)
    params = CtfParameters(
        ones * 1e4,
        ones * 9e3,
        ones * 10,
        ones * 300,
        ones * 2.7,
        ones * 0.1,
        ones * 0,
        ones * 0,
        ones,
    )
    ctf = compute_ctf(params, 32, 2.0)
    assert ctf.shape == (n, 32, 17)
    # at k = 0 RELION's CTF equals sin(K3) = Q0: positive, amplitude contrast only
    torch.testing.assert_close(ctf[:, 0, 0], torch.full((n,), 0.1), atol=1e-6, rtol=0)
