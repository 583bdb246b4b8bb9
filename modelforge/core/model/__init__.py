"""The model before Keras: layer types with their shapes and true fans (`layer_types`, `fans`), the config's
layers as shaped specs (`specs`), and the one walk of the model over nodes that name their inputs (`graph`)."""
