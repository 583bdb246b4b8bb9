"""Helpers the tests share: small run settings, the run-folder contract, and running the CLI as a user would."""

import subprocess
import sys
from pathlib import Path

# Small and fast: a 1-epoch run of a narrow model still exercises every code path.
FAST = ["trainer.epochs=1", "model.units=8", "trainer.verbose=0"]
# The run-folder contract: every completed run has these (the CLI adds Hydra's modelforge.log).
RUN_FILES = {"config.yaml", "init_plan.json", "model_summary.txt", "history.csv", "metrics.json", "model.keras"}
CLI_RUN_FILES = RUN_FILES | {"modelforge.log"}


def run_module(cwd, *args, timeout=600):
    """Runs `python -m modelforge args` in `cwd` as a user would; returns the CompletedProcess.

    A subcommand, when wanted, is the first of `args` (`run_module(tmp, "plan", "layer=conv")`).
    """
    return subprocess.run([sys.executable, "-m", "modelforge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def overlay_venv(path, *extra_paths):
    """A fresh venv from the base interpreter that also sees this venv's packages through a .pth file.

    Only the listed paths are added, and .pth files inside them are not processed there, so this venv's
    editable modelforge stays out unless the checkout itself is among `extra_paths`. Returns its python.
    """
    import sysconfig

    subprocess.run([sys._base_executable, "-m", "venv", str(path)], check=True, timeout=300)
    python = Path(path) / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    lines = [sysconfig.get_paths()["purelib"], *map(str, extra_paths)]
    Path(site, "_dev_venv.pth").write_text("\n".join(lines) + "\n")
    return python


def run_dirs(root):
    """Every run folder (one with a metrics.json) under root, in path order."""
    return sorted(p.parent for p in Path(root).rglob("metrics.json"))
