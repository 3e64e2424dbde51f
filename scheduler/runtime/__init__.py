"""The service: wiring, leadership, the loop that conducts the rest."""
