"""The suite runs the same whatever the caller's shell holds.

Every run setting (`make help` lists them: RUN, MODEL, EPS, HOST, PORT, ...) is read from the environment,
which `make test NAME=value` and many shells fill (zsh sets HOST, for one). Tests, and the pipeline commands
they start, see only the settings they pass themselves, so they are removed here, before any test runs.
"""
from __future__ import annotations

import os

from pipeline.settings import BY_NAME

for _name in BY_NAME:
    os.environ.pop(_name, None)
# The same numbers on every machine: fp32 whatever the CPU (the demo's test runs the demo's own bf16 detection).
os.environ["CPU_BF16"] = "0"
