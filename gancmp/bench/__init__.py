"""Benchmarks (tooling: imports anything, nothing in the package imports it).

`steps`: throughput of one configured train step, FID features and the sweep runner;
`suite`: `gancmp bench --what all`, the runs behind experiments/bench/RESULTS.md.
"""
