"""Our RELION conventions against cryoJAX 0.6, an independent simulator nobody here wrote.

The RELION particle -> cryoJAX mapping pinned here (each part verified by experiment):

* pose: ``EulerAnglePose(-rlnOriginXAngst, -rlnOriginYAngst, -rot, -tilt, -psi)``.
  cryoJAX's Euler angles are an extrinsic zyz rotation that *generates* the pose, RELION's
  undo it, so every angle is negated (as cryoJAX's own docstring says). cryoJAX's offset is
  where the particle centre is moved to, i.e. ``-origin`` (our ``shifts_a``), in Å.
* CTF: ``AstigmaticCTF(defocus=(U + V)/2, astigmatism=U - V, angle=90° - rlnDefocusAngle)``
  with all lengths in Å. The astigmatism is the *full* difference U - V (cryoJAX applies
  ``0.5 * astigmatism * cos(2(azimuth - angle))``), not half of it. The angle is
  ``90° - rlnDefocusAngle`` because cryoJAX measures the azimuth as ``atan2(kx, ky)``, from
  +ky towards +kx, while RELION measures it from +kx towards +ky. Amplitude contrast and
  phase shift (degrees) carry over unchanged, RELION's ``rlnCtfBFactor`` is an envelope
  ``FourierGaussian(b_factor=B)``.
* sign: cryoJAX's CTF is ``sin(chi_cryojax - phase - K3)`` = ``-`` RELION's ``-sin(chi)``, so a
  CTF-modulated cryoJAX image must be negated to match RELION (and us). Plain projections
  (no CTF) need no negation.
* amplitude: a cryoJAX ``GaussianMixtureVolume`` amplitude ``m`` renders the projected
  density per Å², ours (same ``m`` as mass in voxel units) the density per pixel, so our
  images are cryoJAX's times ``pixel_size**2``.
* sampling: cryoJAX's ``GaussianMixtureProjection(sampling_mode="point")`` samples the
  projected Gaussians at pixel centres, as our renderer does. The default ``"average"``
  averages each pixel (a box filter), which costs ~1e-4 in correlation.

cryoJAX's electron wavelength uses 12.2639 where RELION uses 12.2643247 (3.5e-5 relative),
which at 1.5 µm defocus and Nyquist of 2 Å pixels moves the CTF phase by ~2e-3 rad; the
tolerances below allow for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

cxs = pytest.importorskip("cryojax.simulator")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy
FourierGaussian = pytest.importorskip("cryojax.ndimage").FourierGaussian

from cryojax_data import (  # noqa: E402
    VOLTAGE_KV,
    GaussianModel,
    Particles,
    asymmetric_model,
    cryojax_images,
    cryojax_pose,
    cryojax_transfer_theory,
    random_particles,
    star_tables,
)

from dynamight_core.geometry.rotations import euler_to_matrix  # noqa: E402
from dynamight_core.io.mrc import StackWriter  # noqa: E402
from dynamight_core.io.stacks import ImageSource, validate_stacks  # noqa: E402
from dynamight_core.io.star import read_particles, write_star  # noqa: E402
from dynamight_core.metrics.fsc import fsc  # noqa: E402
from dynamight_core.physics.ctf import compute_ctf  # noqa: E402
from dynamight_core.physics.render import (  # noqa: E402
    images_from_fourier,
    render_projections,
    render_volume,
)
from dynamight_core.reconstruct.homogeneous import reconstruct_half_maps  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def our_images(
    model: GaussianModel, particles: Particles, box_px: int, pixel_size_a: float, with_ctf: bool
) -> np.ndarray:
    """`(B, D, D)` images from our renderer and our CTF, RELION conventions."""
    rotations = euler_to_matrix(torch.as_tensor(particles.euler_deg)).double()
    shifts = -torch.as_tensor(particles.origin_a)
    ctf = (
        compute_ctf(particles.ctf_parameters(), box_px, pixel_size_a).double() if with_ctf else None
    )
    image_ft = render_projections(
        *model.torch_args(), rotations, shifts, box_px, pixel_size_a, ctf=ctf
    )
    return images_from_fourier(image_ft, box_px).numpy()


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every image pair."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(axis=1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def global_scale(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Least-squares factor s minimising ``|ours - s * theirs|`` over all images."""
    return float((ours * theirs).sum() / (theirs * theirs).sum())


# ---------------------------------------------------------------------------------------------
# 1. Image-level agreement
# ---------------------------------------------------------------------------------------------

BOX = 64
PIXEL = 2.0

# Generic poses: tilt away from 0/180 and psi away from 0, so that A and A^T differ, and
# origins of 5-6.5 Å (2.5-3 px, above the 1.5-2 px widths, |x| != |y|) so that sign and
# x/y-swap errors show.
# The astigmatism is large (4-7 kÅ, U 1.3-1.5 µm, V 0.8-0.9 µm) and the angles near 45° mod
# 90° so that the defocus-angle corruptions below change the images clearly even though
# the Gaussians carry little signal beyond ~1/6 Å^-1.
IMAGE_PARTICLES = Particles(
    euler_deg=np.array(
        [
            [30.0, 50.0, -70.0],
            [120.0, 100.0, 20.0],
            [-150.0, 35.0, 160.0],
            [75.0, 140.0, -110.0],
            [-40.0, 70.0, 45.0],
            [170.0, 115.0, -25.0],
        ]
    ),
    origin_a=np.array(
        [[3.0, -5.0], [-4.2, 2.5], [6.0, 1.5], [-2.0, -6.0], [5.0, -3.0], [-3.5, 4.5]]
    ),
    defocus_u_a=np.array([14000.0, 13500.0, 15000.0, 14500.0, 13000.0, 14800.0]),
    defocus_v_a=np.array([9000.0, 8500.0, 8000.0, 8800.0, 8200.0, 9000.0]),
    defocus_angle_deg=np.array([40.0, 130.0, 50.0, 140.0, -45.0, 35.0]),
    phase_shift_deg=np.zeros(6),
    bfactor_a2=np.zeros(6),
)


@pytest.fixture(scope="module")
def image_model() -> GaussianModel:
    return asymmetric_model(8, BOX, PIXEL, seed=11)


@pytest.fixture(scope="module")
def cryojax_reference(image_model: GaussianModel) -> dict[bool, np.ndarray]:
    return {
        with_ctf: cryojax_images(image_model, IMAGE_PARTICLES, BOX, PIXEL, with_ctf)
        for with_ctf in (False, True)
    }


@pytest.mark.parametrize("with_ctf", [False, True], ids=["projection", "ctf"])
def test_images_match_cryojax(
    image_model: GaussianModel, cryojax_reference: dict[bool, np.ndarray], with_ctf: bool
) -> None:
    theirs = cryojax_reference[with_ctf]
    ours = our_images(image_model, IMAGE_PARTICLES, BOX, PIXEL, with_ctf)
    corr = correlations(ours, theirs)
    # measured: 1 - corr <= 1.1e-9 (projections) and <= 5.7e-9 (with CTF)
    assert corr.min() > 0.9999, f"correlations with cryoJAX: {corr}"
    scale = global_scale(ours, theirs)
    # our per-pixel masses vs cryoJAX's per-Å² density; measured |scale / 4 - 1| <= 8e-6
    # and a relative residual of 4e-5 (projections) and 9e-5 (with CTF)
    assert scale == pytest.approx(PIXEL**2, rel=1e-3), f"global scale {scale}"
    residual = np.linalg.norm(ours - scale * theirs) / np.linalg.norm(ours)
    assert residual < 1e-3, f"relative residual after the global scale: {residual}"


def _transposed_rotation(p: Particles) -> Particles:
    # (Rz(psi) Ry(tilt) Rz(rot))^T = Rz(-rot) Ry(-tilt) Rz(-psi): Euler angles of A^T
    return replace(p, euler_deg=-p.euler_deg[:, ::-1].copy())


def _negated_origin(p: Particles) -> Particles:
    return replace(p, origin_a=-p.origin_a)


def _swapped_origin_xy(p: Particles) -> Particles:
    return replace(p, origin_a=p.origin_a[:, ::-1].copy())


def _defocus_angle_plus_90(p: Particles) -> Particles:
    return replace(p, defocus_angle_deg=p.defocus_angle_deg + 90.0)


def _defocus_angle_negated(p: Particles) -> Particles:
    return replace(p, defocus_angle_deg=-p.defocus_angle_deg)


def _phase_shift_negated(p: Particles) -> Particles:
    return replace(p, phase_shift_deg=-p.phase_shift_deg)


def _identity(p: Particles) -> Particles:
    return p


# name: (corrupt the RELION parameters, corrupt our image, with CTF, upper bound on the
# largest per-image correlation with cryoJAX). Measured maxima are in the comments.
CORRUPTIONS: dict[
    str, tuple[Callable[[Particles], Particles], Callable[[np.ndarray], np.ndarray], bool, float]
] = {
    # A^T instead of A; measured max 0.42
    "rotation_transposed": (_transposed_rotation, lambda x: x, False, 0.9),
    # origin added instead of subtracted; measured max 0.39
    "origin_sign": (_negated_origin, lambda x: x, False, 0.9),
    # rlnOriginX and rlnOriginY exchanged; measured max 0.53
    "origin_xy_swapped": (_swapped_origin_xy, lambda x: x, False, 0.9),
    # arrays indexed (x, y) instead of (y, x); measured max 0.65
    "image_transposed": (_identity, lambda x: x.transpose(0, 2, 1), False, 0.9),
    # astigmatism axis turned by 90° (U and V exchanged); measured max 0.83
    "defocus_angle_plus_90": (_defocus_angle_plus_90, lambda x: x, True, 0.9),
    # astigmatism angle measured the other way round; measured max 0.83
    "defocus_angle_negated": (_defocus_angle_negated, lambda x: x, True, 0.9),
    # CTF = +sin(chi) instead of RELION's -sin(chi); measured -1.0000
    "ctf_sign": (_identity, lambda x: -x, True, -0.99),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupted_convention_is_detected(
    image_model: GaussianModel, cryojax_reference: dict[bool, np.ndarray], name: str
) -> None:
    corrupt_particles, corrupt_image, with_ctf, bound = CORRUPTIONS[name]
    ours = corrupt_image(
        our_images(image_model, corrupt_particles(IMAGE_PARTICLES), BOX, PIXEL, with_ctf)
    )
    corr = correlations(ours, cryojax_reference[with_ctf])
    assert corr.max() < bound, f"{name}: correlations with cryoJAX {corr} not below {bound}"


def test_ctf_arrays_match_cryojax() -> None:
    """Our CTF and cryoJAX's on the same rfft grid, including phase shift and B-factor."""
    particles = replace(
        IMAGE_PARTICLES,
        phase_shift_deg=np.array([0.0, 0.0, 90.0, 30.0, 0.0, 0.0]),
        bfactor_a2=np.array([0.0, 40.0, 0.0, 0.0, 80.0, 0.0]),
    )
    ours = compute_ctf(particles.ctf_parameters(), BOX, PIXEL).double().numpy()
    config = cxs.BasicImageConfig((BOX, BOX), PIXEL, VOLTAGE_KV)
    frequencies = config.get_frequency_grid(padding=True, physical=True)
    assert frequencies.shape == (BOX, BOX // 2 + 1, 2)

    def cryojax_ctf(p: Particles, i: int) -> np.ndarray:
        bfactor = p.bfactor_a2[i] if p.bfactor_a2[i] > 0 else None
        theory = cryojax_transfer_theory(
            p.defocus_u_a[i],
            p.defocus_v_a[i],
            p.defocus_angle_deg[i],
            p.phase_shift_deg[i],
            bfactor,
        )
        # propagate_object applies CTF and envelope to an object spectrum; use ones
        ones = jnp.ones((BOX, BOX // 2 + 1), dtype=complex)
        return -np.asarray(theory.propagate_object(ones, config).real)

    theirs = np.stack([cryojax_ctf(particles, i) for i in range(len(particles))])
    difference = np.abs(ours - theirs).max()
    # the wavelength difference (module docstring) dominates: measured 2.8e-3
    assert difference < 5e-3, f"largest CTF difference {difference}"
    # measured 1.57-2.0 for each corruption (the CTF lies in [-1, 1])
    for corrupt in (_defocus_angle_plus_90, _defocus_angle_negated, _phase_shift_negated):
        wrong = compute_ctf(corrupt(particles).ctf_parameters(), BOX, PIXEL).double().numpy()
        assert np.abs(wrong - theirs).max() > 1.0, corrupt.__name__


def test_rotation_matrices_match_cryojax() -> None:
    """cryoJAX's rotation of the mapped pose is RELION's A itself, not A^T."""
    ours = euler_to_matrix(torch.as_tensor(IMAGE_PARTICLES.euler_deg)).numpy()
    theirs = np.stack(
        [
            np.asarray(cryojax_pose(jnp.asarray(e), jnp.zeros(2)).rotation.as_matrix())
            for e in IMAGE_PARTICLES.euler_deg
        ]
    )
    # measured 6e-16 (A) and 1.38 (A^T)
    assert np.abs(ours - theirs).max() < 1e-10
    assert np.abs(ours.transpose(0, 2, 1) - theirs).max() > 0.5


# ---------------------------------------------------------------------------------------------
# 2. Our reconstruction of cryoJAX images
# ---------------------------------------------------------------------------------------------

RECON_BOX = 48
RECON_PARTICLES = 600


@dataclass(frozen=True)
class CryojaxDataset:
    folder: Path
    model: GaussianModel
    particles: Particles


@pytest.fixture(scope="module")
def cryojax_dataset(tmp_path_factory: pytest.TempPathFactory) -> CryojaxDataset:
    """Noise-free CTF-modulated cryoJAX particles written as a RELION stack."""
    folder = tmp_path_factory.mktemp("cryojax_dataset")
    model = asymmetric_model(14, RECON_BOX, PIXEL, seed=5)
    particles = random_particles(RECON_PARTICLES, seed=6)
    images = cryojax_images(model, particles, RECON_BOX, PIXEL, with_ctf=True)
    # the same images in cryoJAX's own CTF sign, for the sign control
    for stack_name, sign in (("particles.mrcs", 1.0), ("unnegated.mrcs", -1.0)):
        with StackWriter(folder / stack_name, len(particles), RECON_BOX, PIXEL) as stack:
            stack.write(0, sign * images)
    return CryojaxDataset(folder, model, particles)


def reconstruction_fsc(
    dataset: CryojaxDataset, star_particles: Particles, name: str, stack: str = "particles.mrcs"
) -> np.ndarray:
    """FSC between our full map from ``star_particles`` metadata and our truth volume."""
    star = dataset.folder / f"{name}.star"
    write_star(star, *star_tables(star_particles, stack, RECON_BOX, PIXEL))
    particle_set = read_particles(star)
    validate_stacks(particle_set)
    source = ImageSource(particle_set)
    try:
        result = reconstruct_half_maps(particle_set, source, particle_set.random_subset)
    finally:
        source.close()
    truth = render_volume(*dataset.model.torch_args(), RECON_BOX, PIXEL).numpy()
    return fsc(result.full, truth, PIXEL).fsc


# shells 1 .. 0.6 Nyquist (1 .. 14 of a 48 px box)
FSC_SHELLS = slice(1, math.floor(0.6 * RECON_BOX / 2) + 1)


def test_reconstruction_of_cryojax_images(cryojax_dataset: CryojaxDataset) -> None:
    curve = reconstruction_fsc(cryojax_dataset, cryojax_dataset.particles, "correct")
    # Noise-free data. Measured: >= 0.9967 in shells 1-14 (0.9925 at shell 15, 0.92 at 18,
    # then a fall to 0 by shell 22 = 0.92 Nyquist, where the truth's power is ~1e-7 of the
    # lowest shells and the reconstruction's own error floor takes over). 0.9 leaves margin
    # for the Wiener filter and the uneven CTF/orientation coverage of 600 particles, and is
    # far above every wrong convention below.
    assert curve[FSC_SHELLS].min() >= 0.9, f"FSC with truth: {np.round(curve, 4)}"


# name: (corrupt the STAR metadata, stack to read, statistic of the FSC over FSC_SHELLS that
# must fall below the bound). Measured values in the comments.
RECON_CORRUPTIONS: dict[str, tuple[Callable[[Particles], Particles], str, str, float]] = {
    # STAR angles of A^T; measured min 0.078 (0.60 at shell 5)
    "rotation_transposed": (_transposed_rotation, "particles.mrcs", "min", 0.5),
    # origins negated; measured min -0.40 (0.81 at shell 5, negative from shell 6)
    "origin_sign": (_negated_origin, "particles.mrcs", "min", 0.5),
    # cryoJAX images not negated: the map comes out inverted; measured max -0.9967
    "ctf_sign": (_identity, "unnegated.mrcs", "max", -0.9),
}


@pytest.mark.parametrize("name", list(RECON_CORRUPTIONS))
def test_reconstruction_detects_wrong_convention(
    cryojax_dataset: CryojaxDataset, name: str
) -> None:
    corrupt, stack, statistic, bound = RECON_CORRUPTIONS[name]
    curve = reconstruction_fsc(cryojax_dataset, corrupt(cryojax_dataset.particles), name, stack)
    value = getattr(curve[FSC_SHELLS], statistic)()
    assert value < bound, f"{name}: {statistic} FSC {value:.4f}, curve {np.round(curve, 4)}"
