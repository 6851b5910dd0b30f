"""Long-run fuzzing harnesses (not run by the test suite; see fuzz/README.md)."""
