"""Hydra glue below the front doors: the typed schemas in Hydra's ConfigStore, the override checks that run
before Hydra starts, composition for the Python API, and the end-of-sweep summary callback.
"""
