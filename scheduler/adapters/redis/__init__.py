"""History and leadership in Redis."""
