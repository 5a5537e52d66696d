"""Optimisation loops: fitting Gaussians to maps and to particle images."""
