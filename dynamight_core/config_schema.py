"""The configuration schema: every setting's name, kind, default, range and help.

The one source of every setting (docs/architecture.md): :mod:`dynamight_core.config`
validates a ``config.yaml`` against it, :mod:`dynamight_core.config_cli` makes the stages'
options from it, settings dataclasses take their defaults from it (:func:`default_of`) and
:mod:`dynamight_core.config_yaml` renders the shipped ``config.yaml``. Standard library only.
"""

from __future__ import annotations

from typing import Any

from dynamight_core.config_key import Key
from dynamight_core.config_site import SITE_SECTIONS

__all__ = ["SCHEMA", "Key", "default_of"]


SCHEMA: dict[str, Any] = {
    "output_dir": Key("path", "results", "folder for every output, log and checkpoint"),
    "inputs": {
        "particles": Key(
            "path",
            "results/simulated/particles.star",
            "RELION particle STAR file (the default is made by rule simulate)",
            must_exist=True,
        ),
        "project_root": Key(
            "path",
            None,
            "RELION project folder that rlnImageName paths are "
            "relative to (null: the STAR file's folder)",
            nullable=True,
            must_exist=True,
        ),
        "mask": Key(
            "path",
            None,
            "soft mask for post-processing, the masked FSC and local resolution (null: made "
            "from the consensus map, settings postprocess.mask_*)",
            nullable=True,
            must_exist=True,
        ),
        "reference_map": Key(
            "path",
            "results/simulated/truth/average.mrc",
            "map to validate against, e.g. a ground truth (null: none)",
            nullable=True,
            must_exist=True,
        ),
        "reference_state": Key(
            "path",
            "results/simulated/truth/mid_state.mrc",
            "map of the one state the deformed maps show, to validate them against, e.g. a "
            "simulation's mid state (null: none)",
            nullable=True,
            must_exist=True,
        ),
        "atomic_model": Key(
            "path",
            None,
            "PDB/mmCIF docked in the consensus map; its residue connectivity replaces the VAE's "
            "smoothness graph. Biases motions towards the model (null: off, recommended)",
            nullable=True,
            must_exist=True,
        ),
    },
    "simulate": {
        "out_dir": Key("path", "results/simulated", "where rule simulate writes the demo data"),
        "n_particles": Key("int", 2000, "number of particles", 2),
        "box_px": Key("int", 64, "box size in pixels (even)", 16),
        "pixel_size_a": Key(
            "float",
            1.8,
            "pixel size in Å (1.8 is not exact in float32, as real pixel sizes rarely are)",
            0.1,
        ),
        "snr": Key("float", 0.1, "signal-to-noise ratio (see README); <= 0 for no noise"),
        "motion": Key("str", "hinge", "simulated motion", choices=("hinge", "interpolate", "none")),
        "max_angle_deg": Key("float", 30.0, "largest hinge angle in degrees", 0.0, 180.0),
        "width_a": Key("float", 3.2, "width (standard deviation) of the pseudo-atoms in Å", 0.1),
        "max_origin_a": Key(
            "float", 4.0, "particle centres drawn uniformly within +-this of the box centre, Å", 0.0
        ),
        "defocus_min_um": Key("float", 1.0, "smallest defocus in µm", 0.01),
        "defocus_max_um": Key("float", 2.5, "largest defocus in µm", 0.01),
        "astigmatism_max_a": Key("float", 400.0, "largest defocus U-V difference in Å", 0.0),
        "voltage_kv": Key("float", 300.0, "acceleration voltage in kV", 1.0),
        "cs_mm": Key("float", 2.7, "spherical aberration in mm", 0.0),
        "amplitude_contrast": Key("float", 0.1, "amplitude contrast (fraction)", 0.0, 1.0),
        "n_truth_maps": Key(
            "int", 5, "ground-truth maps written along the motion (1 without motion)", 1
        ),
        "atomic_model": Key(
            "path",
            None,
            "PDB/mmCIF to simulate instead of the built-in two-domain phantom (null: phantom)",
            nullable=True,
            must_exist=True,
        ),
        "moving_selection": Key(
            "str",
            None,
            "chain of the atomic model that the hinge moves (null: its last chain)",
            nullable=True,
        ),
        "second_model": Key(
            "path",
            None,
            "second state of the atomic model (same atoms), for motion 'interpolate'",
            nullable=True,
            must_exist=True,
        ),
        "seed": Key("int", 0, "random seed of the simulation"),
    },
    "split": {
        "seed": Key(
            "int",
            0,
            "seed of the half-set split (when rlnRandomSubset is absent) and "
            "of the validation subsets",
        ),
        "validation_fraction": Key(
            "float",
            0.1,
            "fraction of each half set held out for validation (above 0: the VAE stops on it)",
            0.0,
            0.5,
            above_minimum=True,
        ),
        "min_particles_per_half": Key(
            "int",
            500,
            "fewer particles in a half set (or fewer than a tenth of this to train on) are "
            "too few for a trustworthy latent space and FSC: see too_few_particles",
            2,
        ),
        "too_few_particles": Key(
            "str",
            "warn",
            "below min_particles_per_half: warn (go on, the log and report say so) or stop "
            "(exit code 2 before any compute)",
            choices=("warn", "stop"),
        ),
    },
    "reconstruct": {
        "pad": Key("int", 2, "Fourier padding factor", 1, 4),
        "batch_size": Key("int", 64, "particles per batch", 1),
        "tau2_fudge": Key("float", 1.0, "multiplies the FSC-derived signal power", 0.01),
        "checkpoint_every": Key("int", 16, "save the internal checkpoint every N batches", 1),
    },
    "gaussians": {
        "n_gaussians": Key(
            "int",
            None,
            "number of Gaussians per half set (null: gaussians_per_residue x residues)",
            1,
            nullable=True,
        ),
        "gaussians_per_residue": Key("float", 2.0, "Gaussians per residue (the paper: 2)", 0.1),
        "n_residues": Key(
            "int",
            None,
            "sequence length (null: estimated from the map volume "
            "above the threshold, 130 Å^3 per residue)",
            1,
            nullable=True,
        ),
        "threshold": Key(
            "float",
            None,
            "density threshold for placing Gaussians (null: the "
            "map's noise level, at least 10% of its maximum)",
            nullable=True,
        ),
        "use_input_mask": Key(
            "bool",
            False,
            "place and fit Gaussians inside inputs.mask instead of the thresholded map",
        ),
        "n_width_classes": Key("int", 2, "shared widths each Gaussian mixes (its own width)", 1, 8),
        "iterations": Key("int", 800, "Adam steps of the fit to the consensus half map", 1),
        "seed": Key("int", 0, "seed of the Gaussian placement"),
    },
    "warmup": {
        "epochs": Key("int", 5, "passes over the half set's training particles", 0),
        "lr_positions": Key(
            "float",
            1e-4,
            "Adam learning rate of positions, in box units (the paper: 1e-4)",
            1e-8,
            1.0,
        ),
        "lr_shape": Key(
            "float", 1e-2, "Adam learning rate of log masses, widths and class weights", 1e-8, 1.0
        ),
        "batch_size": Key("int", 64, "particles per step", 1),
        "max_resolution_a": Key(
            "float",
            None,
            "highest resolution in the image loss, in Å (null: Nyquist)",
            0.1,
            nullable=True,
        ),
        "noise_particles": Key(
            "int", 1000, "particles used to fit the image scale and the noise spectrum", 1
        ),
        "seed": Key("int", 0, "seed of the particle order"),
    },
    "vae": {
        "latent_dim": Key(
            "int", 6, "dimension of the latent space (the original's default)", 1, 64
        ),
        "encoder_px": Key("int", 64, "largest encoder input image in pixels (Fourier-cropped)", 8),
        "decoder": Key(
            "str",
            "mlp",
            "displacement decoder: mlp (the original's MLP for every Gaussian of every "
            "particle, the reference) or basis (a positional network gives decoder_basis "
            "basis displacements per Gaussian once per step, the latent their coefficients: "
            "3-4x faster training, as accurate on moving data, but more spurious motion on "
            "motion-free data; see README)",
            choices=("mlp", "basis"),
        ),
        "decoder_basis": Key(
            "int",
            4,
            "basis displacements per Gaussian of the basis decoder (a domain turning about a "
            "hinge takes 2)",
            1,
            256,
        ),
        "decoder_layers": Key("int", 8, "hidden layers of the displacement decoder", 1, 32),
        "decoder_width": Key("int", 32, "units per decoder layer", 4, 1024),
        "pe_frequencies": Key("int", 10, "frequencies of the positional encoding", 1, 32),
        "decoder_precision": Key(
            "str",
            "float32",
            "arithmetic of the decoder's hidden layers: float32 (the original's), or bfloat16 "
            "(about 1.7x faster where the CPU or GPU has it natively, but on the demo its "
            "motions were 30% less accurate)",
            choices=("float32", "bfloat16"),
        ),
        "max_resolution_a": Key(
            "float",
            8.0,
            "highest resolution used in training, in Å "
            "(null: Nyquist); motions are estimated at low resolution",
            0.1,
            nullable=True,
        ),
        "batch_size": Key("int", 64, "particles per step", 1),
        "lr": Key("float", 1e-3, "Adam learning rate of encoder and decoder", 1e-8, 1.0),
        "lr_positions": Key(
            "float", 1e-4, "Adam learning rate of consensus positions (box units)", 0.0, 1.0
        ),
        "lr_shape": Key(
            "float", 1e-3, "Adam learning rate of log masses, widths, class weights", 0.0, 1.0
        ),
        "kl_weight": Key(
            "float",
            0.01,
            "weight of the KL term (1: the evidence lower bound, "
            "which at low SNR lets the latents collapse)",
            0.0,
        ),
        "regularisation_factor": Key(
            "float",
            0.1,
            "deformation penalty gradient relative to the data term's, over the decoder's "
            "parameters",
            0.0,
        ),
        "consensus_update_every": Key("int", 5, "epochs between consensus updates (0: never)", 0),
        "consensus_update_particles": Key(
            "int", 100, "least-deformed particles averaged into the new consensus", 1
        ),
        "patience": Key(
            "int", 10, "stop after this many epochs without a better validation loss", 1
        ),
        "max_epochs": Key("int", 150, "stop after this many epochs at most", 1),
        "stop_share": Key(
            "float",
            0.05,
            "stop when the last stop_window epochs made less than this share of the "
            "validation loss's descent so far (0: only patience and max_epochs)",
            0.0,
            1.0,
        ),
        "stop_window": Key("int", 5, "epochs over which stop_share is measured", 1),
        "min_epochs": Key("int", 15, "epochs always trained before stop_share may stop", 1),
        "refine_steps": Key(
            "int",
            10,
            "Adam steps refining each latent against its own image, "
            "from the encoder's estimate (validation start and export)",
            0,
        ),
        "refine_lr": Key("float", 0.1, "learning rate of the latent refinement", 1e-6, 10.0),
        "track_steps": Key(
            "int",
            2,
            "refinement steps per epoch for validation particles, "
            "continuing from their previous latents (2 and 3 stopped training at the same "
            "epoch with the same accuracy; 1 lagged)",
            0,
        ),
        "seed": Key("int", 0, "seed of initialisation, sampling and particle order"),
    },
    "store": {
        "enabled": Key(
            "bool",
            True,
            "train-vae reads each half set's particle store (stage store-particles: the "
            "Fourier-cropped transforms in one contiguous file, written once) instead of "
            "the .mrcs stacks (the same results with precision float32)",
        ),
        "precision": Key(
            "str",
            "float32",
            "number type of the store: float32 (training identical to reading the stacks) "
            "or float16 (half the size, values rounded to 3 significant digits)",
            choices=("float32", "float16"),
        ),
        "local_copy": Key(
            "path",
            None,
            "folder on node-local disk the store is copied to at the start of each "
            "train-vae job and removed from at its end, e.g. $TMPDIR (environment "
            "variables expanded; null: read the store where it is)",
            nullable=True,
        ),
    },
    "inverse": {
        "epochs": Key("int", 40, "passes over the half set's training latents", 1),
        "batch_size": Key("int", 32, "latents per step", 1),
        "points": Key("int", 2000, "points per latent and step: consensus Gaussians, jittered", 10),
        "jitter_a": Key(
            "float",
            3.0,
            "standard deviation in Å of the jitter that spreads the training points around "
            "the Gaussians (the inverse is evaluated between them)",
            0.0,
        ),
        "smoothness_weight": Key(
            "float",
            1.0,
            "weight of the penalty on the inverse displacement's change over 1 px",
            0.0,
        ),
        "layers": Key("int", 6, "hidden layers of the inverse network (the original: 6)", 1, 32),
        "width": Key("int", 64, "units per layer of the inverse network", 4, 1024),
        "lr": Key("float", 1e-3, "Adam learning rate", 1e-8, 1.0),
        "seed": Key("int", 0, "seed of initialisation and sampling"),
    },
    "deformed": {
        "method": Key(
            "str",
            "adjoint",
            "how images are brought back to the consensus frame: adjoint (the exact adjoint "
            "of the training's forward model, through the forward field) or inverse (the "
            "paper's inverse network, fitted by stage fit-inverse)",
            choices=("adjoint", "inverse"),
        ),
        "reference": Key(
            "str",
            "mean",
            "the state both half maps are reconstructed in, each estimated from its own half: "
            "mean (each pseudo-atom's mean deformed position over the half's particles), "
            "consensus_fit (the half's pseudo-atoms fitted to its consensus map, before VAE "
            "training) or trained (the trained consensus, which training moves; earlier "
            "versions' maps)",
            choices=("mean", "consensus_fit", "trained"),
        ),
        "control_grid": Key(
            "int",
            16,
            "nodes per axis of the grid the deformation is evaluated on, then interpolated "
            "to the voxels",
            2,
            256,
        ),
        "iterations": Key(
            "int",
            0,
            "conjugate-gradient iterations with the deformation in the forward model, from "
            "the filtered backprojection (0: the filtered backprojection only; the iterations "
            "sharpen noise-free maps but lowered the FSC to the truth at SNR 0.1, see README)",
            0,
        ),
        "tau2_fudge": Key(
            "float", 1.0, "multiplies the signal power from the half's own FSC", 0.01
        ),
        "shards": Key(
            "int",
            1,
            "jobs per half set for the backprojection (each its own SLURM job), added by the solve",
            1,
            1024,
        ),
        "batch_size": Key("int", 32, "particles per batch", 1),
        "checkpoint_every": Key("int", 16, "save the backprojection every N batches", 1),
    },
    "postprocess": {
        "mask_threshold": Key(
            "float",
            None,
            "density level of the low-passed consensus map that the mask encloses (null: "
            "automatic, from the map's noise level); used when inputs.mask is null",
            nullable=True,
        ),
        "mask_lowpass_a": Key(
            "float", 15.0, "low-pass of the consensus map before thresholding, in Å", 0.0
        ),
        "mask_extend_a": Key("float", 3.0, "growth of the thresholded region, in Å", 0.0),
        "mask_soft_edge_a": Key("float", 6.0, "width of the mask's raised-cosine edge, in Å", 0.0),
        "randomise_at_fsc": Key(
            "float",
            0.8,
            "phases are randomised beyond the shell where the unmasked FSC first falls below "
            "this (RELION's post-processing)",
            0.0,
            1.0,
        ),
        "guinier_from_a": Key(
            "float",
            10.0,
            "lowest resolution of the Guinier fit, in Å; the fit runs to the map's "
            "resolution (FSC 0.143)",
            0.0,
            above_minimum=True,
        ),
        "bfactor_a2": Key(
            "float",
            None,
            "B-factor in Å² the sharpening undoes (positive: sharpen; null: the Guinier fit's)",
            nullable=True,
        ),
    },
    "local_resolution": {
        "window_px": Key(
            "int", 20, "edge of the cubic window of the local FSC, in pixels (even)", 8, 256
        ),
        "step_px": Key("int", 4, "spacing of the window centres, in pixels", 1, 64),
        "threshold": Key("float", 0.143, "FSC level that defines the local resolution", 0.0, 1.0),
    },
    "report": {
        "null_control": Key(
            "bool",
            True,
            "also reconstruct the null control: the deformed maps with each particle's "
            "latent replaced by a random other particle's (costs one more deformed "
            "reconstruction)",
        ),
        "null_seed": Key("int", 0, "seed of the null control's latent shuffle", 0),
        "significance_z": Key(
            "float",
            3.0,
            "standard errors by which the deformed maps' masked FSC area must exceed the "
            "null control's and the consensus's for the report to call the gain significant",
            0.0,
        ),
        "min_gain_fsc_area": Key(
            "float",
            0.002,
            "least gain in masked FSC area (over the consensus, over the null control) that "
            "the report calls a gain, however significant: below it the answer is no. The "
            "null control's own offset from the consensus is of this order on the demo "
            "(+0.0006) and on cryoJAX T4 lysozyme the deformed maps gain 0.002-0.013",
            0.0,
        ),
        "min_motion_fraction": Key(
            "float",
            0.1,
            "least RMS motion of the most mobile region, as a fraction of the resolution, "
            "for the report to call the motion real: a shift of 0.1 of the resolution turns "
            "the phase at the resolution shell by 36 degrees, the least a half-map FSC there "
            "can see",
            0.0,
        ),
        "moving_region_fraction": Key(
            "float",
            0.5,
            "the report answers both questions where it moves: inside the mask, around the "
            "pseudo-atoms whose decoded RMS motion is at least this fraction of the consensus "
            "resolution (a spread of half the resolution leaves the consensus under 1% of its "
            "resolution shell there); 0: over the whole mask",
            0.0,
        ),
        "state_disagreement_fraction": Key(
            "float",
            0.1,
            "the report warns when the two deformed half maps' conformations are further "
            "apart (registered onto each other, RMS or rigid part) than this fraction of the "
            "deformed maps' resolution and than the consensus half maps (the measure's floor): "
            "their FSC then measures the mismatch",
            0.0,
        ),
        "regions": Key(
            "int",
            6,
            "spatial regions (k-means of the pseudo-atoms) of the motion-reliability table",
            1,
            64,
        ),
        "negative_control": Key(
            "path",
            None,
            "summary.json of this workflow run on data without motion, shown as the "
            "negative control (null: none)",
            nullable=True,
            must_exist=True,
        ),
    },
    "explore": {
        "states": Key(
            "int",
            5,
            "density maps (and pseudo-atom states) along PC1 of each half set's latent space, "
            "at evenly spaced percentiles of the particles' PC1 scores",
            2,
            101,
        ),
        "low_percentile": Key(
            "float", 5.0, "percentile of the PC1 scores where the maps and movie start", 0.0, 100.0
        ),
        "high_percentile": Key(
            "float", 95.0, "percentile of the PC1 scores where the maps and movie end", 0.0, 100.0
        ),
        "movie_frames": Key("int", 20, "frames of the movie along PC1 (one MRC each)", 2, 1000),
        "movie_fps": Key("float", 8.0, "frames per second of the movie (GIF, ChimeraX)", 0.1, 60.0),
        "bfactor": Key(
            "str",
            "displacement",
            "what the pseudo-atoms' B-factor column carries: displacement (RMS motion over "
            "the particles, Å) or disagreement (RMS difference between the half sets' "
            "motions of held-out particles, Å: low is reliable)",
            choices=("displacement", "disagreement"),
        ),
        "reconstruct_nearest": Key(
            "int",
            0,
            "also reconstruct each map's state from the particles nearest it in latent space "
            "(deformed backprojection of this many particles; 0: Gaussian renders only)",
            0,
        ),
        "state_percentiles": Key(
            "str",
            None,
            "improved maps of chosen states: comma-separated percentiles (0-100) of the "
            "particles along PC1, oriented alike in both half sets (stage align-halves); each "
            "half reconstructs all its particles in that state, two half maps per state and "
            "their FSC (null: none; e.g. 5,50,95: both ends and the middle)",
            nullable=True,
        ),
    },
    **SITE_SECTIONS,
}


def default_of(section: str, name: str) -> Any:
    """The schema's default of ``section.name``: what settings dataclasses take as theirs."""
    spec = SCHEMA[section][name]
    if not isinstance(spec, Key):
        raise KeyError(f"{section}.{name} is a section, not a setting")
    return spec.default
