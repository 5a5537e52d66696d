"""Reading and writing RELION STAR files, MRC volumes and stacks, and atomic models."""
