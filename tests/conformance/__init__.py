"""The BuildKit conformance suite's cases and machinery (issue 12, item 3).

``harness`` builds each case's project for real before and after one mutation and compares the two
images (files and config) with the two keys; ``cases`` holds the cases, instruction by instruction and
flag by flag. ``tests/integration/test_conformance.py`` runs them on whatever engine DOCKER_HOST names;
``benchmarks/conformance_sample.py`` runs a larger random sample through the same harness.
"""
