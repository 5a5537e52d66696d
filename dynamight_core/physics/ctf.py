"""Contrast transfer function from RELION STAR parameters, computed with torch-ctf.

Conventions are RELION's ``CTF::getCTF``: ``CTF = -sin(chi)``, positive defocus is
underfocus, ``rlnDefocusAngle`` is the angle of the U axis from +x towards +y, phase
shift and amplitude contrast enter as ``-K5 - K3``, and the B-factor envelope is
``exp(-B |k|^2 / 4)``. torch-ctf takes defocus in µm (STAR: Å). Its electron wavelength
comes from CODATA constants while RELION uses a rounded formula; we hand torch-ctf the
voltage for which its wavelength equals RELION's, so defoci fitted by RELION are used
with the wavelength they were fitted with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import constants
from torch_ctf import calculate_ctf_2d

from dynamight_core.geometry.fourier import rfft_frequencies_2d


def relion_wavelength_a(voltage_kv: torch.Tensor) -> torch.Tensor:
    """Electron wavelength as RELION computes it (Å), from the voltage in kV."""
    volts = voltage_kv.double() * 1e3
    return 12.2643247 / torch.sqrt(volts * (1.0 + volts * 0.978466e-6))


def torch_ctf_voltage_kv(voltage_kv: torch.Tensor) -> torch.Tensor:
    """Voltage (kV) for which torch-ctf's CODATA wavelength equals RELION's wavelength.

    Solves ``h c / sqrt(eV (2 m c^2 + eV)) = lambda_relion`` for ``V``.
    """
    wavelength_m = relion_wavelength_a(voltage_kv) * 1e-10
    rest_energy_j = constants.electron_mass * constants.speed_of_light**2
    momentum_energy_j = constants.Planck * constants.speed_of_light / wavelength_m
    kinetic_j = -rest_energy_j + torch.sqrt(rest_energy_j**2 + momentum_energy_j**2)
    return (kinetic_j / constants.elementary_charge / 1e3).to(voltage_kv.dtype)


@dataclass(frozen=True)
class CtfParameters:
    """Per-particle CTF parameters, as stored in a RELION STAR file.

    Attributes
    ----------
    defocus_u_a, defocus_v_a
        `(B,)` defoci along the U and V axes in Å (positive: underfocus).
    defocus_angle_deg
        `(B,)` ``rlnDefocusAngle`` in degrees.
    voltage_kv
        `(B,)` acceleration voltage in kV.
    cs_mm
        `(B,)` spherical aberration in mm.
    amplitude_contrast
        `(B,)` amplitude contrast fraction.
    phase_shift_deg
        `(B,)` phase-plate shift in degrees.
    bfactor_a2
        `(B,)` CTF B-factor in Å² (``rlnCtfBFactor``).
    scale
        `(B,)` CTF scale factor (``rlnCtfScalefactor``).
    """

    defocus_u_a: torch.Tensor
    defocus_v_a: torch.Tensor
    defocus_angle_deg: torch.Tensor
    voltage_kv: torch.Tensor
    cs_mm: torch.Tensor
    amplitude_contrast: torch.Tensor
    phase_shift_deg: torch.Tensor
    bfactor_a2: torch.Tensor
    scale: torch.Tensor

    def to(self, device: torch.device) -> CtfParameters:
        """Move all tensors to ``device``."""
        return CtfParameters(**{k: v.to(device) for k, v in self.__dict__.items()})


def compute_ctf(params: CtfParameters, box_px: int, pixel_size_a: float) -> torch.Tensor:
    """CTF on the rfft grid of a ``box_px`` image (``torch.fft.rfft2`` layout).

    Parameters
    ----------
    params
        Per-particle CTF parameters, tensors of shape `(B,)`.
    box_px
        Image size D in pixels (even).
    pixel_size_a
        Pixel size in Å.

    Returns
    -------
    torch.Tensor
        `(B, D, D//2+1)` float32 CTF values (dimensionless), DC at index 0.
    """
    u_a, v_a = params.defocus_u_a, params.defocus_v_a
    angle = params.defocus_angle_deg
    # torch-ctf needs U >= V; swapping U and V while turning the axes by 90° is the same CTF
    swap = u_a < v_a
    u_a, v_a = torch.where(swap, v_a, u_a), torch.where(swap, u_a, v_a)
    angle = torch.where(swap, angle + 90.0, angle)
    ctf = calculate_ctf_2d(
        defocus=(u_a + v_a).float() / 2e4,
        astigmatism=(u_a - v_a).float() / 2e4,
        astigmatism_angle=angle.float(),
        voltage=torch_ctf_voltage_kv(params.voltage_kv.double()).float(),
        spherical_aberration=params.cs_mm.float(),
        amplitude_contrast=params.amplitude_contrast.float(),
        phase_shift=params.phase_shift_deg.float(),
        pixel_size=float(pixel_size_a),
        image_shape=(box_px, box_px),
        rfft=True,
        fftshift=False,
    )
    ky, kx = rfft_frequencies_2d(box_px, device=ctf.device)
    k2_a = (ky**2 + kx**2) / pixel_size_a**2
    bfactor = params.bfactor_a2.float()[:, None, None]
    envelope = torch.exp(-bfactor * k2_a / 4.0)
    return ctf * envelope * params.scale.float()[:, None, None]
