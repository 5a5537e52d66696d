"""The optional napari viewer of a half set's latent space (``pip install .[viewer]``).

:mod:`.session` holds the viewer's logic (PCA of the latents, the model rendered at a
latent point, trajectories, polygon selections written as STAR subsets) with no GUI
import, so that it is tested headless. :mod:`.app` is the napari front end; it imports
napari and Qt only inside its functions. Nothing in the core package, the workflow or the
tests imports either: every view the viewer offers is also a headless command
(``explore maps``, ``explore movie``, ``explore select``).
"""
