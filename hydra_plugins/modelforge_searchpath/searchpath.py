"""Puts modelforge's config groups on every Hydra app's search path, under a `modelforge/` namespace.

Another app then picks them in its defaults list without clashing with its own groups of the same names:

    defaults:
      - modelforge/initializer@model.initializer: he_normal
      - initializer: my_own        # the app's own `initializer` group

Hydra imports every plugin in the environment at start-up, so this module imports nothing heavy.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

# A package whose only child, `modelforge`, is conf/ itself (see pyproject's package-dir).
NAMESPACED_ROOT = "pkg://modelforge._confroot"
OWN_PRIMARY = "pkg://modelforge.conf"


class ModelforgeSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # modelforge's own app already has these groups at the top level; listing them twice adds nothing.
        if any(entry.path == OWN_PRIMARY for entry in search_path.get_path()):
            return
        # The groups' YAML options extend modelforge's typed schemas, which must be in the ConfigStore.
        from modelforge.schema import register

        register()
        search_path.append(provider="modelforge", path=NAMESPACED_ROOT)
