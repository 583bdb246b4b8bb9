"""What the parallel launcher's fork server imports once, so that every worker forks with it loaded.

TensorFlow and Keras take 5-8 s to import; a worker forked from a process that imported them starts in
milliseconds. The import is quiet (`before_tensorflow`: this process's stderr filter, which the workers then
share), and nothing runs: no op, no session, no thread pool, so a fork is as clean as a fresh interpreter.
Only the fork server imports it (`modelforge.sweep.launcher.PRELOAD`).
"""

from modelforge.system.quiet import before_tensorflow

before_tensorflow()

import cloudpickle  # noqa: E402,F401  (what a job arrives in)
import keras  # noqa: E402,F401
import tensorflow  # noqa: E402,F401
from hydra.core.utils import run_job  # noqa: E402,F401

from modelforge.run import setup  # noqa: E402,F401  (what a job runs: data, model, training)
