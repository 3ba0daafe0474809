"""Process-level tricks, each in one place with the reason it exists.

* ``training`` - the one context a group trains under (flush-to-zero, heap, no NVML probe).
* ``imports`` - the engine imported with the garbage collector paused, then frozen; cheap exits.
* ``preload`` - what a training pool's fork server imports before any work arrives.
* ``forkserver`` - finding and stopping this process's fork server.
* ``sockets`` - multiprocessing's Unix sockets in a folder whose paths fit, whatever ``TMPDIR`` is.
* ``executors`` - the worker processes of a ProcessPoolExecutor (the one place that reads them).
* ``denormals`` - flush-to-zero on every CPU thread torch computes on (part of the numerics).
* ``heap`` - freed memory kept in the heap while training (no page faults per step).
* ``stops`` - Ctrl-C and SIGTERM as exceptions; workers that leave with their owner.
"""
