"""Training and evaluation engines.

* ``mlp`` - the plain MLP and the stacked (batched) forward of K of them.
* ``classifier`` - the textbook LightningModule (one net, one optimizer): the reference path.
* ``evaluated`` - what every engine shares: validation, per-epoch records (images, evaluations,
  seconds), best weights, test, resume bookkeeping.
* ``lockstep`` - the fast LightningModule: K gradient runs in lockstep on stacked weights.
* ``search`` - the gradient-free LightningModule: one EvoTorch search, a generation per step.
* ``history`` - one run's per-epoch record (best epoch, divergence), plain data.
* ``cuda_graph`` - replaying a whole step as a CUDA graph.
* ``population`` - P weight vectors scored in one batched forward (gradient-free methods).
* ``trainer`` - the Lightning Trainer around a group (lockstep, or one search), and CPU settings while it fits.
"""
