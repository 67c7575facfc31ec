"""mallocGame: memory mapping as a single-player Gymnasium game, and a MuZero-style agent.

Importing the package registers ``mallocgame/MallocGame-v0`` with Gymnasium."""

from mallocgame import env as _env  # noqa: F401  (registers "mallocgame/MallocGame-v0")
