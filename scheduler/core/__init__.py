"""The decisions applied: the engine, its ports, the reference history, simulation."""
