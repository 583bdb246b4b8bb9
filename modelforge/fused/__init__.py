"""The fused engine: K runs that differ only in what fuses, trained as one model with a leading arm axis.

- `ops`: one fused op per Keras layer kind, in a registry (`OPS`); `layer_refused` says what cannot fuse.
- `optimizer`: the fused optimizer, each arm with its own scalars, slots, rate and clipping.
- `trainer`: `train_group` trains a group's arms; its checkpoint lets a killed group continue.
- `handoff`: each arm's outcome (`Arm`), handed to its own run to be written as an ordinary run.
- `groups`: a sweep's jobs in groups and chunks (nothing here imports Hydra; composing stays in `sweep`).
"""
