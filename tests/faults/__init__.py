"""Faults for tests: a TCP fault proxy, process and database faults, one delivery checker."""
