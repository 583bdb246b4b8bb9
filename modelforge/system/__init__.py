"""The process, not the model: TensorFlow's start-up noise filtered (`quiet`), and signal handlers installed and
restored (`signals`). Standard library only."""
