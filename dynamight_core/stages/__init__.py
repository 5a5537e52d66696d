"""Thin stage modules: parse arguments, call the library, write outputs atomically."""
