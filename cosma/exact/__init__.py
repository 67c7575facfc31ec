"""COSMA, the exact side: the fixed-order model (``model``) and solver (``solver``,
registered as ``exact``), the paper-faithful ILP (``ilp``), lower bounds shared by the
solvers (``bounds``), divide and conquer (``dnc``) and the default solver (``auto``)."""
