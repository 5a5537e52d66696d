"""Particle batches for training: images, CTFs and poses as tensors."""
