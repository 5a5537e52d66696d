"""Stage ``explore``: the latent space turned into maps, movies, models and particle subsets.

Everything the original offers only in its napari GUI, as commands that run on a headless
node: ``explore maps`` (density maps at chosen latent points), ``explore movie`` (a
trajectory as an MRC series, a ChimeraX script and a GIF), ``explore pseudo-atoms`` (the
Gaussian model as PDB/mmCIF pseudo-atoms), ``explore select`` (a RELION STAR subset by
latent region) and ``explore view`` (the optional napari viewer, ``pip install .[viewer]``).
"""

from __future__ import annotations

HELP = "explore the latent space: maps, movies, pseudo-atoms, particle subsets, viewer"

ACTIONS = {
    "maps": "dynamight_core.stages.explore_maps",
    "movie": "dynamight_core.stages.explore_movie",
    "pseudo-atoms": "dynamight_core.stages.explore_pseudo_atoms",
    "select": "dynamight_core.stages.explore_select",
    "view": "dynamight_core.stages.explore_view",
}
