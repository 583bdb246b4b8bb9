"""The fused model's speed and memory for K = 1, 3, 9, 27 arms of the default model (20 epochs on the digits).

Each K runs in a fresh process: K arms are set up as the fused launcher sets them up (one Keras model each, for
its initial weights), then trained as one model. Printed: the fused fit's seconds, per arm and in all, against
one plain `model.fit` of the same model; and the process's peak memory over its peak before the fit.
Run: .venv/bin/python benchmarks/fused_scaling.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import modelforge
from modelforge.fused.trainer import train_group
from modelforge.run.setup import prepare
k = int(sys.argv[1])
runs = [modelforge.run_config(modelforge.compose([f"seed={s}", "trainer.verbose=0"])) for s in range(k)]
sessions = [prepare(r) for r in runs]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tick = time.perf_counter()
train_group(sessions)
fused = time.perf_counter() - tick
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = sessions[0]
tick = time.perf_counter()
s.model.fit(s.dataset.x_train, s.dataset.y_train, batch_size=32, epochs=20, verbose=0,
            validation_data=(s.dataset.x_val, s.dataset.y_val))
single = time.perf_counter() - tick
print(json.dumps({"k": k, "fused_s": fused, "single_fit_s": single, "rss_before_mb": before / 1024,
                  "rss_after_mb": after / 1024}))
"""


def main() -> None:
    print(f"{'K':>3} {'fused fit s':>12} {'per arm s':>10} {'one fit s':>10} {'vs K fits':>10} {'peak MB':>8} "
          f"{'+MB':>6}")
    for k in (1, 3, 9, 27):
        out = subprocess.run([sys.executable, "-c", CHILD, str(k)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{k:>3} {r['fused_s']:>12.2f} {r['fused_s'] / k:>10.3f} {r['single_fit_s']:>10.2f} "
              f"{k * r['single_fit_s'] / r['fused_s']:>9.1f}x {r['rss_after_mb']:>8.0f} "
              f"{r['rss_after_mb'] - r['rss_before_mb']:>6.0f}")


if __name__ == "__main__":
    main()
