"""Orchestration only: what a user runs. Nothing in the package imports it but the command line.

* ``compare`` - ``compare(config, backend=...)``: plan -> backend -> store -> summary -> report.
* ``sweep`` - learning rates tuned on validation, then a compare at the chosen ones.
* ``setup`` - the checks before a compare starts, and its config.json / samples.json.
"""
