"""Homogeneous (and later deformed) reconstruction from particle images."""
