"""The core every other part stands on: the IR (``ir``), the ONNX lowering
(``onnx_lower``), the accelerator presets (``hardware``), lifetimes and sizes
(``analysis``), the one judge (``validator``, ``cost``), the plan file (``planfile``),
the solver interface (``interface``) and synthetic graphs (``synthetic``).

Nothing here imports a solver: the judge must not depend on the contestants."""
