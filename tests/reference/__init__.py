"""Independent PyTorch references for the parity tests (torch is a test-only dependency)."""
