"""A Hydra ConfigSource that shows a package's configs one folder down, under `modelforge/`.

`modelforge-ns://modelforge.conf` serves exactly the files of `pkg://modelforge.conf`, but at
`modelforge/<group>/<option>`: the same YAML tree, shipped once, appears at the top level in modelforge's own
app and under a namespace in every other app. Hydra registers ConfigSource plugins found in
`hydra_plugins`, so the scheme works wherever modelforge is installed.
"""


from hydra._internal.core_plugins.importlib_resources_config_source import ImportlibResourcesConfigSource
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource

NAMESPACE = "modelforge"


class NamespacedConfigSource(ConfigSource):
    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        self.inner = ImportlibResourcesConfigSource(provider=provider, path=f"pkg://{self.path}")

    @staticmethod
    def scheme() -> str:
        return "modelforge-ns"

    @staticmethod
    def _inside(config_path: str) -> str | None:
        """The path inside the package, or None for a path outside the namespace folder. modelforge's `hydra/`
        options stay out: Hydra reads launchers from its own `hydra/launcher` group, never from a namespace, so
        another app's `--help` would list them as options it cannot use (its plugins store `parallel` and
        `fused` there instead)."""
        path = config_path.strip("/")
        if path == NAMESPACE:
            return ""
        if path.startswith(NAMESPACE + "/"):
            inside = path[len(NAMESPACE) + 1:]
            return None if inside == "hydra" or inside.startswith("hydra/") else inside
        return None

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        if config_path.strip("/") == "":
            return [NAMESPACE] if results_filter in (None, ObjectType.GROUP) else []
        inside = self._inside(config_path)
        if inside is None:
            return []
        found = self.inner.list(inside, results_filter)
        return [name for name in found if name != "hydra"] if inside == "" else found

    def load_config(self, config_path: str) -> ConfigResult:
        inside = self._inside(config_path)
        if not inside:
            raise ConfigLoadError(f"Config not found : {config_path}")
        return self.inner.load_config(inside)

    def available(self) -> bool:
        return self.inner.available()

    def is_group(self, config_path: str) -> bool:
        inside = self._inside(config_path)
        if config_path.strip("/") == "":
            return True
        return inside is not None and self.inner.is_group(inside)

    def is_config(self, config_path: str) -> bool:
        inside = self._inside(config_path)
        return bool(inside) and self.inner.is_config(inside)  # type: ignore[arg-type]

