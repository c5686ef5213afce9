// Replaced by the JOSE fuzz entry point.
