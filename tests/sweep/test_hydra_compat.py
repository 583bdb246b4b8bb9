"""The backport of Hydra PR 2928: copies of the structured config source share the ConfigStore."""

import copy

from hydra._internal.sources_registry import SourcesRegistry
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import modelforge
from modelforge.cli.hydra_compat import share_config_store

OVERRIDES = ["layer=lstm", "data=mnist", "trainer.epochs=3", "initializer=variance_scaling"]


def test_copies_share_the_store_and_composition_is_unchanged():
    before = OmegaConf.to_container(modelforge.compose(OVERRIDES), resolve=True)
    share_config_store()
    source_class = SourcesRegistry.instance().resolve("structured")
    assert "__deepcopy__" in vars(source_class)
    source = source_class(provider="test", path="structured://")
    clone = copy.deepcopy(source)
    assert clone is not source and clone.store is ConfigStore.instance()
    assert (clone.provider, clone.path) == (source.provider, source.path)
    assert OmegaConf.to_container(modelforge.compose(OVERRIDES), resolve=True) == before
    assert share_config_store() is False  # applied once only
