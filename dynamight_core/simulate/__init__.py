"""Synthetic RELION-style datasets with known poses, CTF, noise and motion."""
