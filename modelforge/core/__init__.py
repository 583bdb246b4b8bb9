"""The pure core, by concept: `config` (the typed run config, what each key means, the initializer policy it
holds, what a `_target_` may name), `model` (layer types with their shapes and true fans, specs, the one walk of
the model), `init` (the init plan, the kernels modelforge computes, the memory estimate), and what they share:
the registries, names, LSUV's decisions (`lsuv`) and number checks.

Nothing here imports TensorFlow, Keras or Hydra (an import-linter contract checks it), so `plan`, config
checks and their doctests answer at once.
"""
