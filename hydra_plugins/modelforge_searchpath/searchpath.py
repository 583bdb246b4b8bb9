"""Puts modelforge's config groups on every Hydra app's search path, under a `modelforge/` namespace.

Another app then picks them in its defaults list without clashing with its own groups of the same names:

    defaults:
      - modelforge/initializer@model.initializer: he_normal
      - initializer: my_own        # the app's own `initializer` group

In modelforge's own app it instead adds the folders named in MODELFORGE_CONFIG_PATH (separated like PATH):
users' own config packs. Unlike `hydra.searchpath=[...]` on the command line, which Hydra 1.3 applies to
composition only, a plugin's search path also reaches `--help` and `glob(*)` sweeps.

Hydra imports every plugin in the environment at start-up, so this module imports nothing heavy.
"""

import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from hydra_plugins.modelforge_searchpath.namespaced import NamespacedConfigSource

OWN_PRIMARY = "pkg://modelforge.conf"


class ModelforgeSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # modelforge's own app already has these groups at the top level; listing them twice adds nothing.
        if any(entry.path == OWN_PRIMARY for entry in search_path.get_path()):
            for folder in filter(None, os.environ.get("MODELFORGE_CONFIG_PATH", "").split(os.pathsep)):
                search_path.append(provider="modelforge-user", path=f"file://{os.path.abspath(folder)}")
            return
        # The groups' YAML options extend modelforge's typed schemas, which must be in the ConfigStore.
        from modelforge.front_door import register

        register()
        search_path.append(provider="modelforge", path=f"{NamespacedConfigSource.scheme()}://modelforge.conf")
