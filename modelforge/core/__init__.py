"""The pure core: registries, fans, layer types, the typed run config, specs, the initializer policy and plan.

Nothing here imports TensorFlow, Keras or Hydra (an import-linter contract checks it), so `plan`, config
checks and their doctests answer at once.
"""
