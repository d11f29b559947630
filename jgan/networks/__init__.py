"""Networks of every family: pure modules that take tensors and return tensors."""
