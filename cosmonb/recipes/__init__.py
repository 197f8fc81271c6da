"""Recipes: how each shipped model is trained and saved (presets, training calls, checkpoints).

Models (:mod:`cosmonb.models`) hold networks and their math only; the code that
trains them with :mod:`cosmonb.train` and ships them with
:mod:`cosmonb.checkpoints` lives here, one module per family.
"""
