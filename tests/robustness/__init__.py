"""Robustness proof: fuzzing, hostile input, crash safety and overload against a real daemon."""
