"""Image formation: CTF and the Gaussian pseudo-atom renderer."""
