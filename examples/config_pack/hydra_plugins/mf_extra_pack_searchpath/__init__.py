"""mf-extra-pack's SearchPathPlugin (no hydra_plugins/__init__.py: that is a namespace package)."""
