"""Clinical scores: pure, vectorised functions over arrays and DataFrames (no I/O
beyond loading packaged coefficient tables)."""
