"""A quiet terminal that hides no error: TensorFlow's known start-up noise is dropped from stderr.

TensorFlow prints absl, oneDNN and CUDA lines to fd 2 before absl is initialised, whatever
`TF_CPP_MIN_LOG_LEVEL` says. A filter inside this process would lose the last lines when the process dies
hard (a segfault, `os._exit`), so fd 2 goes through a pipe to a small filter process instead: it drops the
known noise line by line, forwards everything else at once and in order, and reads to the end whatever
happens to this process. `MODELFORGE_TF_LOGS=1` (or `hydra.verbose`) shows everything, unfiltered.

The command line installs the filter first thing; any other process (a script using the Python API, a sweep's
worker) gets it from `before_tensorflow`, which modelforge calls right before it imports TensorFlow itself. A
process that imported TensorFlow before modelforge has printed the noise already: set
`TF_CPP_MIN_LOG_LEVEL=2` there, which quiets all but the absl lines printed before absl starts.
Standard library only: every layer may call it.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

ENV = "MODELFORGE_TF_LOGS"
# TensorFlow's start-up and CPU-only notices, and one harmless tf.data notice: each a regular expression over a
# whole line, naming the source file and the message, so that no other line of those files is hidden.
NOISE = (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\.",
    r"^I\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.",
    r"^E\d{4} [\d:. ]+\d+ cuda_(platform|executor)\.cc:\d+\] failed call to cuInit: .*(UNKNOWN ERROR \(303\)|"
    r"CUDA_ERROR_NO_DEVICE)",
    r"^I\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU ",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$",
    r"^[IWE]\d{4} [\d:. ]+\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool ",
)
# The filter process: the standard library only, started with -S -E so it costs a few milliseconds.
# Ray forwards its workers' lines with a prefix such as "(train pid=123) ": the noise is the same behind it.
_FILTER = """
import re, sys
noise = [re.compile(rb"^(\\([^)]*\\) )?" + p.encode().lstrip(b"^")) for p in sys.argv[1:]]
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not any(p.search(line.rstrip(b"\\r\\n")) for p in noise):
        out.write(line)
        out.flush()
"""


def wanted(argv: list[str]) -> bool:
    """Whether to filter: not when the user asked for TensorFlow's logs, nor under Hydra's verbose logging."""
    return os.environ.get(ENV) != "1" and not any(a.startswith(("hydra.verbose", "--hydra-help")) for a in argv)


_installed: list[subprocess.Popen[bytes]] = []


def before_tensorflow() -> None:
    """Called by modelforge right before it imports TensorFlow: unless TensorFlow is loaded already or the user
    asked for its logs, sets `TF_CPP_MIN_LOG_LEVEL=2` (where unset) and filters fd 2, once per process."""
    if "tensorflow" in sys.modules or _installed or not wanted([]):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet_stderr()


def quiet_stderr() -> subprocess.Popen[bytes]:
    """Routes this process's fd 2 (and its children's) through the filter process; returns that process."""
    if _installed:
        return _installed[0]
    sys.stderr.flush()
    read, write = os.pipe()
    original = os.dup(2)
    proc = subprocess.Popen([sys.executable, "-S", "-E", "-c", _FILTER, *NOISE], stdin=read, stdout=original,
                            stderr=original)
    os.close(read)
    os.dup2(write, 2)
    os.close(write)

    def restore() -> None:
        # Hand fd 2 back and let the filter read to the end before the shell prompt returns. A helper process
        # may still hold the pipe (multiprocessing's resource tracker ends only after this process): then the
        # filter finishes on its own a moment later, losing nothing, and the prompt does not wait for it.
        sys.stderr.flush()
        os.dup2(original, 2)
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass

    atexit.register(restore)
    _installed.append(proc)
    return proc
