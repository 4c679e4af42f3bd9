"""Particle models and their observables (science.md §1-§3, §8), plain NumPy/SciPy.

- :mod:`.initial_conditions`: IC families and headings.
- :mod:`.neighbours`: minimal-image neighbour pairs (KD-tree) and the brute-force oracle.
- :mod:`.forces`: Morse pair force.
- :mod:`.vicsek`: discrete Vicsek model with Morse steering (production model).
- :mod:`.dorsogna`: continuous D'Orsogna model (RK4 / semi-implicit Euler).
- :mod:`.density`: cell-averaged Gaussian KDE density movies.
- :mod:`.order_parameters`: polarisation, milling, nematic order.
"""
