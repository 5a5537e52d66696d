"""Models: the Gaussian pseudo-atom model and (later) the deformation networks."""
