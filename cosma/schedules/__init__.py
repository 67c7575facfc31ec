"""Operator orders: the candidate orders every solver starts from (``orders``), the
memory-minimizing schedulers (``minpeak``: Serenity-style dynamic programming with a
beam fallback; ``mpmf``: COSMA's minimum-peak model in CP-SAT) and the budget tiers
``M_R``/``M_H``/``M_P`` built on them (``tiers``)."""
