"""Running studies: plan the runs, train them in lockstep groups, write results, summarize, report.

* ``plan`` - config -> RunPlans (structured keys, unique names) -> lockstep groups.
* ``compare`` - the compare API (``compare(config)``), resume, the output folder.
* ``artifacts`` - one trained run -> its files.
* ``sweep`` - learning-rate grids tuned on validation, and Lightning's lr-find.
* ``cluster`` / ``ray_backend`` - ``--ray``: the same groups as Ray tasks on a cluster, results back to the driver.
"""

