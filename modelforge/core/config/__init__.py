"""The run config: its typed schemas and their checks (`schema`), the typing engine that reads a field's type for
them, for OmegaConf and for the command line (`fields`), what each key means (`keys`) and the resume
digest made from it (`digest`), the data sets' shapes (`datasets`), metric names (`metrics`), the initializer
policy the config holds (`policy`), and what a `_target_` may name (`targets`)."""
