"""Offline stand-ins for external services (IBM Quantum runtime) used by the tests."""
