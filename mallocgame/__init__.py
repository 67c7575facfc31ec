"""mallocGame: memory mapping as a single-player Gymnasium game, and a MuZero-style agent."""
