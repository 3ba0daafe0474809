"""Training and evaluation engines.

* ``mlp`` - the plain MLP and the stacked (batched) forward of K of them.
* ``classifier`` - the textbook LightningModule (one net, one optimizer): the reference path.
* ``lockstep`` - the fast LightningModule: K runs in lockstep on stacked weights.
* ``history`` - one run's per-epoch record (best epoch, divergence), plain data.
* ``cuda_graph`` - replaying a whole step as a CUDA graph.
* ``population`` - P weight vectors scored in one batched forward (gradient-free methods).
* ``trainer`` - the Lightning Trainer around a lockstep group, and CPU settings while it fits.
"""
