"""The inference engine: one thread owns the MLX model; nothing here imports the web stack."""
