"""Running the workflow for RELION: the External job's settings and snakemake process."""
