"""Reduced-order modelling layer: POD, latent windows and latent forecasters (no Kedro imports)."""
