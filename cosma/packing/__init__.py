"""Allocation only: fixed-lifetime buffers packed under a capacity (MiniMalloc's problem).

``problem`` holds the types, the CSV format, the checker, the status and the one best-fit
placer; ``exact`` is the exact packer, ``greedy`` the greedy baselines, ``boxes`` the
packing check the exact solvers call on their relaxations' answers."""
