"""The development kit beside the runtime package ``clever``: the Clever API simulator,
sample and fleet generators, the embedded PostgreSQL, the local Airflow launcher
(``make sync``/``demo``/``airflow``) and the benchmarks. Never deployed to Airflow."""

import os

from clever.paths import DEVKIT_DIR, PLUGINS_DIR

# For the dev kit's own child processes (bench steps, fleet tools): both packages.
DEV_PYTHONPATH = os.pathsep.join([str(PLUGINS_DIR), str(DEVKIT_DIR)])
