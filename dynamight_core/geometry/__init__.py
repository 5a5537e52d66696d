"""Rotations, shifts and Fourier-space grids, in RELION's conventions."""
