"""structgen's benchmarks (``structgen bench masks | throughput | strategies``), installed as ``structgen_benchmarks``."""
