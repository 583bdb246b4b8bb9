"""The fused engine: K runs that differ only in what fuses, trained as one model with a leading arm axis.

- `ops`: one fused op per Keras layer class, in a closed registry keyed by class (`OPS`); `layer_refused` says
  what cannot fuse.
- `optimizer`: one rule per Keras optimizer (`RULES`), slots by Keras' names; `FusedOptimizer` holds what they
  share (clipping, rates and schedules, multipliers, weight decay, frozen arms).
- `model`: the arms' layers as ops over stacked variables, the forward pass over the model's walk, gradients.
- `terms`: the loss and metrics (the task's defaults, or each arm's own Keras objects).
- `arms`: each arm's end of epoch (Keras' own EarlyStopping and ReduceLROnPlateau per arm).
- `trainer`: `train_group` trains a group's arms; `checkpoint` lets a killed group continue.
- `eligibility`: `run_refused` says why a run cannot fuse.
- `handoff`: each arm's outcome (`Arm`), handed to its own run to be written as an ordinary run.
- `groups`: a sweep's jobs in groups and chunks (nothing here imports Hydra; composing stays in `sweep`).
- `executors`: where chunks run (here, Ray tasks, submitit jobs).
"""
