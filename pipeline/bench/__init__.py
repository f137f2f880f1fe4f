"""The benchmarks and baselines of ``ggik bench``; no DVC stage runs them."""
