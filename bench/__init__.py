"""memscore's benchmarks: is the worker ever the bottleneck? (`make bench`, BENCHMARKS.md).

client_overhead, scaling and saturation each report figures and the targets they are
judged by; every judged figure is a ratio of two things measured in the same run.
"""
