"""Particle models and their observables (science.md §1-§3, §8), plain NumPy/SciPy (+ numba).

- :mod:`.initial_conditions`: IC families and headings.
- :mod:`.neighbours`: minimal-image neighbour pairs (KD-tree, cell list) and the brute-force oracle.
- :mod:`.cell_list`: compiled (numba) cell-list kernels behind the simulators' default step.
- :mod:`.forces`: Morse pair force.
- :mod:`.vicsek`: discrete Vicsek model with Morse steering (production model).
- :mod:`.dorsogna`: continuous D'Orsogna model (RK4 / semi-implicit Euler).
- :mod:`.density`: cell-averaged Gaussian KDE density movies.
- :mod:`.order_parameters`: polarisation, milling, nematic order.
"""
