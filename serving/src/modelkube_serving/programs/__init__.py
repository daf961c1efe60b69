"""DSPy programs served next to the model (issue 7)."""
