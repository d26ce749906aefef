"""structgen's benchmarks (``structgen bench masks | throughput | strategies | apps``).

Installed as the package ``structgen_benchmarks``.
"""
