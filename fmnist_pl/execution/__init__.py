"""Where a compare's groups train: one :class:`~fmnist_pl.execution.backend.Backend` interface.

* ``backend`` - the interface and :class:`InProcess` (this process, one group after another).
* ``pool`` - :class:`TrainingPool`: worker processes of this machine, at the same time.
* ``ray_backend`` / ``cluster`` - :class:`RayCluster`: Ray tasks on a cluster; the ``--ray`` address.
* ``driver`` - the loop every backend that trains elsewhere shares, and its progress bar.
* ``unit`` - one unit of work -> its runs' files: the one module workers import to train.
"""
