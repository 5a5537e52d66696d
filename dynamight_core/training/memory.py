"""Memory planning for the training steps: estimated peak bytes, and the batch that fits.

The estimates count the tensors a step holds at its peak, from the shapes alone:

* what autograd saves for the backward pass (each decoder layer's input and
  pre-activation, the spread's flat tap indices and weights, the cropped spectra, the
  residual, the deformation penalty's gathered pairs, the encoder's layer inputs);
* the largest working set on top of that (the spread grid and its transforms in the
  render's forward or backward pass, the decoder's gradients, the encoder's input
  preparation), whichever is largest;
* the batch's own tensors, the parameters with their gradients and Adam's two moments.

They are validated against measured peaks (``tests/test_memory_plan.py``: peak resident
memory on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU). A GPU needs more than
the tensors: :func:`projected_gpu_bytes` adds the CUDA context, cuFFT's workspaces and
the caching allocator's slack. :func:`dynamight_core.memory.choose_batch_size` halves a
requested batch until its estimate fits, or raises
:class:`~dynamight_core.errors.MemoryPlanError` naming the
settings to change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from dynamight_core.memory import ByteBreakdown

logger = logging.getLogger(__name__)

FLOAT_BYTES = 4  # float32 and int32
COMPLEX_BYTES = 8  # complex64
ADAM_COPIES = 4  # parameter, gradient, exp_avg, exp_avg_sq
SPREAD_TAPS_2D = 16  # 4 x 4 cubic B-spline taps per point and channel
SPREAD_PAD_PX = 3  # the padded spread grid is (size + 3) per axis
NEAREST_PER_GAUSSIAN = 2  # nearest-neighbour pairs per Gaussian in the penalty
EDGES_PER_GAUSSIAN = 12.0  # typical edges per Gaussian of the smoothness graph

GIB = 1024**3
CUDA_CONTEXT_BYTES = 512 * 1024**2  # CUDA context and kernels, outside torch's allocator
ALLOCATOR_SLACK = 1.15  # caching allocator: block rounding and fragmentation


@dataclass(frozen=True)
class StepShape:
    """The sizes that set a training step's memory.

    Attributes
    ----------
    batch
        Particles per step B.
    box_px
        Full box D of the model.
    grid_px
        Box d of the training grid the images are rendered on (``TrainingGrid.box_px``).
    batch_box_px
        Box of the batch's image and CTF arrays as read (D today; d once the reader crops).
    n_gaussians
        Gaussians N.
    n_channels
        Width channels C of the Gaussian model.
    oversampling
        Render oversampling s (the spread grid is ``s d`` per side).
    decoder_layers, decoder_width
        Hidden layers of the decoder and units per layer W.
    decoder_basis
        Basis displacements K per Gaussian of the ``basis`` decoder; 0 for ``mlp``.
    pe_frequencies
        Frequencies F of the decoder's positional encoding.
    activation_bytes
        Bytes per decoder activation (4 for float32, 2 for bfloat16 autocast).
    encoder_px
        Side of the encoder's input image e (0: no encoder in this step).
    encoder_hidden
        Widths of the encoder's two hidden layers.
    latent_dim
        Dimension L of the latent space.
    n_edges
        Edges E of the neighbour graph (0: no deformation penalty in this step).
    """

    batch: int
    box_px: int
    grid_px: int
    batch_box_px: int
    n_gaussians: int
    n_channels: int = 2
    oversampling: int = 2
    decoder_layers: int = 8
    decoder_width: int = 32
    decoder_basis: int = 0
    pe_frequencies: int = 10
    activation_bytes: int = FLOAT_BYTES
    encoder_px: int = 64
    encoder_hidden: tuple[int, int] = (256, 128)
    latent_dim: int = 6
    n_edges: int = -1

    def __post_init__(self) -> None:
        if self.n_edges < 0:  # the default: a typical smoothness graph
            object.__setattr__(self, "n_edges", round(EDGES_PER_GAUSSIAN * self.n_gaussians))

    def with_batch(self, batch: int) -> StepShape:
        """The same step at another batch size."""
        return replace(self, batch=batch)


@dataclass(frozen=True)
class MemoryEstimate(ByteBreakdown):
    """Estimated peak bytes of one step, by part; every field is in bytes.

    Attributes
    ----------
    decoder_bytes
        Decoder activations saved for the backward pass.
    render_bytes
        Render and loss tensors saved for the backward pass (tap indices and weights,
        cropped spectra, residual, deformed positions).
    encoder_bytes
        Encoder layer inputs saved for the backward pass.
    penalty_bytes
        Deformation penalty's gathered pairs and distances saved for the backward pass.
    workspace_bytes
        The largest transient working set on top of the saved tensors (spread grid and
        transforms, gradients of the activations, encoder input preparation).
    batch_bytes
        The batch's images, CTFs and their cropped copies.
    parameters_bytes
        Parameters, their gradients and the optimizer's state.
    overhead_bytes
        Fixed overhead (0 for the tensors alone; see :func:`projected_gpu_bytes`).
    """

    decoder_bytes: float = 0.0
    render_bytes: float = 0.0
    encoder_bytes: float = 0.0
    penalty_bytes: float = 0.0
    workspace_bytes: float = 0.0
    batch_bytes: float = 0.0
    parameters_bytes: float = 0.0
    overhead_bytes: float = 0.0


# ---------------------------------------------------------------------------------------------
# Parts of a step
# ---------------------------------------------------------------------------------------------


def _half_plane(box_px: int) -> int:
    """Number of rfft samples of a `(box, box)` image."""
    return box_px * (box_px // 2 + 1)


def decoder_saved_bytes(shape: StepShape) -> float:
    """Decoder activations kept for backward: each layer's input and pre-activation.

    ``mlp``: the first (factored) layer and every hidden layer keep a `(B, N, W)`
    pre-activation (for the ELU) and a `(B, N, W)` output (the next layer's input); the
    per-Gaussian positional encoding `(N, 6F)` is computed once per step. ``basis``: the
    positional network's layers are `(N, W)`, once per step, plus the basis `(N, K, 3)` and
    the displacements `(B, N, 3)`.
    """
    per_gaussian = shape.n_gaussians * (18 * shape.pe_frequencies + shape.decoder_width)
    if shape.decoder_basis:
        positional = 2.0 * (shape.decoder_layers + 1) * shape.n_gaussians * shape.decoder_width
        basis = 3 * shape.n_gaussians * shape.decoder_basis
        displacements = 3 * shape.batch * shape.n_gaussians
        return FLOAT_BYTES * (per_gaussian + positional + basis + displacements)
    per_layer = shape.batch * shape.n_gaussians * shape.decoder_width * shape.activation_bytes
    return 2.0 * (shape.decoder_layers + 1) * per_layer + FLOAT_BYTES * per_gaussian


def decoder_workspace_bytes(shape: StepShape) -> float:
    """Gradients of the largest decoder activations alive at once in its backward pass."""
    if shape.decoder_basis:
        return 3.0 * FLOAT_BYTES * shape.batch * shape.n_gaussians * 3
    per_layer = shape.batch * shape.n_gaussians * shape.decoder_width * shape.activation_bytes
    return 3.0 * per_layer


def render_saved_bytes(shape: StepShape) -> float:
    """Render and loss tensors kept for backward.

    The spread keeps `(B, N, C, 16)` int32 flat tap indices, `(B, N, 16)` tap weights and
    `(B, N, 2, 4)` powers; the deformed positions `(B, N, 3)` are kept by the projection;
    the cropped spectra `(B, C, d, d//2+1)` by the multiplication with the Gaussians'
    transforms, the residual `(B, d, d//2+1)` by the loss.
    """
    points = shape.batch * shape.n_gaussians
    spread = points * (shape.n_channels * SPREAD_TAPS_2D + SPREAD_TAPS_2D + 8) * FLOAT_BYTES
    positions = points * 3 * FLOAT_BYTES
    spectra = shape.batch * (shape.n_channels + 1) * _half_plane(shape.grid_px) * COMPLEX_BYTES
    return float(spread + positions + spectra)


def render_workspace_bytes(shape: StepShape) -> float:
    """The largest transient of the render: its forward spread or its backward pass.

    Forward: the `(B, N, C, 16)` values spread and their indices, the padded
    `(B, C, s d + 3, s d + 3)` grid and its folded copies, the grid's transform. Backward:
    the gradient of the transform (complex, full grid, ``torch.fft``'s r2c backward), the
    padded gradient grid, and the `(B, N, C, 16)` gathered gradients and their products.
    """
    taps = shape.batch * shape.n_gaussians * shape.n_channels * SPREAD_TAPS_2D * FLOAT_BYTES
    side = shape.oversampling * shape.grid_px
    grid = shape.batch * shape.n_channels * (side + SPREAD_PAD_PX) ** 2 * FLOAT_BYTES
    transform = shape.batch * shape.n_channels * _half_plane(side) * COMPLEX_BYTES
    forward = 2 * taps + 3 * grid + transform
    backward = 2 * taps + 2 * grid + transform + grid * COMPLEX_BYTES // FLOAT_BYTES
    return float(max(forward, backward))


def encoder_saved_bytes(shape: StepShape) -> float:
    """Inputs of the encoder's three linear layers and their ReLU outputs `(B, ...)`."""
    first, second = shape.encoder_hidden
    width = shape.encoder_px**2 + 2 * first + 2 * second + 4 * shape.latent_dim
    return float(shape.batch * width * FLOAT_BYTES) if shape.encoder_px else 0.0


def encoder_workspace_bytes(shape: StepShape) -> float:
    """Preparing the encoder's input: phase ramps, signs and products at the batch's box."""
    per_image = _half_plane(shape.batch_box_px) * (3 * COMPLEX_BYTES + 3 * FLOAT_BYTES)
    return float(shape.batch * per_image) if shape.encoder_px else 0.0


def penalty_saved_bytes(shape: StepShape) -> float:
    """The penalty's pair differences `(B, P, 3)`, lengths and clamped terms `(B, P)`.

    P is the graph's E edges (difference, length, stretch, clash kept) plus 2 N
    nearest-neighbour pairs (difference, length, excess kept).
    """
    if shape.n_edges == 0:
        return 0.0
    nearest = NEAREST_PER_GAUSSIAN * shape.n_gaussians
    return float(shape.batch * (6 * shape.n_edges + 5 * nearest) * FLOAT_BYTES)


def penalty_workspace_bytes(shape: StepShape) -> float:
    """The two gathered `(B, E, 3)` endpoint arrays of the edges (forward and backward)."""
    return float(shape.batch * 6 * shape.n_edges * FLOAT_BYTES)


def batch_tensor_bytes(shape: StepShape) -> float:
    """Images (complex) and CTFs (real) as read, and their copies cropped to the grid."""
    as_read = _half_plane(shape.batch_box_px)
    cropped = _half_plane(shape.grid_px) if shape.grid_px < shape.batch_box_px else 0
    return float(shape.batch * (as_read + cropped) * (COMPLEX_BYTES + FLOAT_BYTES))


def model_parameter_count(shape: StepShape) -> int:
    """Parameters of the Gaussians, the decoder and (if any) the encoder."""
    width = shape.decoder_width
    decoder = (
        6 * shape.pe_frequencies * width
        + (shape.latent_dim + 1) * width
        + shape.decoder_layers * (width + 1) * width
        + 3 * (width + 1)
    )
    if shape.decoder_basis:  # the output layer gives K x 3; the coefficient network
        hidden = 64
        decoder += 3 * (shape.decoder_basis - 1) * (width + 1) + (shape.latent_dim + 1) * hidden
        decoder += (hidden + 1) * hidden + (hidden + 1) * shape.decoder_basis
    first, second = shape.encoder_hidden
    encoder = (
        (shape.encoder_px**2 + 1) * first
        + (first + 1) * second
        + (second + 1) * 2 * shape.latent_dim
    )
    gaussians = shape.n_gaussians * (4 + shape.n_channels) + shape.n_channels
    return decoder + (encoder if shape.encoder_px else 0) + gaussians


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------


def estimate_training_step_bytes(shape: StepShape, overhead_bytes: float = 0.0) -> MemoryEstimate:
    """Peak bytes of one VAE training step (forward, backward, Adam) at ``shape``.

    Parameters
    ----------
    shape
        The step's sizes (``shape.n_edges = 0``: no penalty; ``encoder_px = 0``: no
        encoder, as in latent refinement).
    overhead_bytes
        Fixed bytes to add (e.g. a CUDA context).
    """
    saved = {
        "decoder": decoder_saved_bytes(shape),
        "render": render_saved_bytes(shape),
        "encoder": encoder_saved_bytes(shape),
        "penalty": penalty_saved_bytes(shape),
    }
    # on top of everything saved: the render's or the penalty's transients; the decoder's
    # gradients once the render's and penalty's tensors are freed; the encoder's input
    # preparation before anything is saved
    workspace = max(
        render_workspace_bytes(shape),
        penalty_workspace_bytes(shape),
        decoder_workspace_bytes(shape) - saved["render"] - saved["penalty"],
        encoder_workspace_bytes(shape) - sum(saved.values()),
        0.0,
    )
    return MemoryEstimate(
        decoder_bytes=saved["decoder"],
        render_bytes=saved["render"],
        encoder_bytes=saved["encoder"],
        penalty_bytes=saved["penalty"],
        workspace_bytes=workspace,
        batch_bytes=batch_tensor_bytes(shape),
        parameters_bytes=float(ADAM_COPIES * FLOAT_BYTES * model_parameter_count(shape)),
        overhead_bytes=overhead_bytes,
    )


def estimate_refinement_step_bytes(shape: StepShape, overhead_bytes: float = 0.0) -> MemoryEstimate:
    """Peak bytes of one latent-refinement step (validation, latents): backward to z only.

    The decoder and render keep the same tensors as in training; there is no encoder, no
    penalty, no parameter gradient and no Adam state of the model (only of z).
    """
    bare = replace(shape, encoder_px=0, n_edges=0)
    estimate = estimate_training_step_bytes(bare, overhead_bytes)
    parameters = FLOAT_BYTES * model_parameter_count(bare)
    return replace(estimate, parameters_bytes=float(parameters))


def estimate_warmup_step_bytes(
    batch: int,
    box_px: int,
    n_gaussians: int,
    n_channels: int = 2,
    oversampling: int = 2,
    overhead_bytes: float = 0.0,
) -> MemoryEstimate:
    """Peak bytes of one warm-up step: the Gaussians rendered at the full box, no decoder.

    Parameters
    ----------
    batch
        Particles per step (``warmup.batch_size``).
    box_px
        Full box D (the warm-up renders and compares at the full box).
    n_gaussians, n_channels
        Gaussians N and width channels C.
    oversampling
        Render oversampling.
    overhead_bytes
        Fixed bytes to add.
    """
    shape = StepShape(
        batch=batch,
        box_px=box_px,
        grid_px=box_px,
        batch_box_px=box_px,
        n_gaussians=n_gaussians,
        n_channels=n_channels,
        oversampling=oversampling,
        decoder_layers=0,
        decoder_width=0,
        pe_frequencies=0,
        encoder_px=0,
        latent_dim=0,
        n_edges=0,
    )
    estimate = estimate_training_step_bytes(shape, overhead_bytes)
    gaussians = ADAM_COPIES * FLOAT_BYTES * (n_gaussians * (4 + n_channels) + n_channels)
    return replace(estimate, parameters_bytes=float(gaussians))


# ---------------------------------------------------------------------------------------------
# GPU projection and batch choice
# ---------------------------------------------------------------------------------------------


def projected_gpu_bytes(estimate: MemoryEstimate, largest_fft_bytes: float = 0.0) -> float:
    """GPU memory the same step needs: tensors, allocator slack, cuFFT and the CUDA context.

    Parameters
    ----------
    estimate
        The step's estimate (tensors only).
    largest_fft_bytes
        Size of the step's largest FFT input; cuFFT's workspace is at most about that.
    """
    return estimate.total_bytes * ALLOCATOR_SLACK + largest_fft_bytes + CUDA_CONTEXT_BYTES


def training_fft_bytes(shape: StepShape) -> float:
    """Bytes of the training step's largest FFT: the `(B, C, s d, s d//2+1)` spread grids."""
    side = shape.oversampling * shape.grid_px
    return float(shape.batch * shape.n_channels * _half_plane(side) * COMPLEX_BYTES)


TRAINING_SETTINGS = (
    "vae.batch_size",
    "vae.max_resolution_a",
    "gaussians.n_gaussians",
    "gaussians.gaussians_per_residue",
    "resources.train_vae.mem_mb",
)
WARMUP_SETTINGS = (
    "warmup.batch_size",
    "gaussians.n_gaussians",
    "gaussians.gaussians_per_residue",
    "resources.warmup.mem_mb",
)
