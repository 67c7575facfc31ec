"""The greedy baselines compilers use today: a TFLite-style best-fit arena with Belady,
greedy or LRU eviction over file or memory-aware order (``baselines``, ``online``), and
XLA-style memory-space assignment (``xla``). They register through the ``cosma.solvers``
entry points like every other solver."""
