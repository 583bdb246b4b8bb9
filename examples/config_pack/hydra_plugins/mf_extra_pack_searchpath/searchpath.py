"""Adds the pack's options to modelforge's groups, in modelforge's app only. Imports nothing heavy."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class MfExtraPackSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if any(entry.path == "pkg://modelforge.conf" for entry in search_path.get_path()):
            search_path.append(provider="mf-extra-pack", path="pkg://mf_extra_pack.conf")
