"""Independent PyTorch references for the parity tests and the benchmarks (torch is a test-only dependency)."""
