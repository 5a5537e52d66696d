"""The validation report: post-processing, controls, latent space and the HTML page."""
