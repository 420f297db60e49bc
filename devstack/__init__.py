"""Single-machine stand-ins for production infrastructure (broker, PostgreSQL, model server).

Installed from pip packages only; used by the tests, the demo and the benchmarks.
`worker/` never imports this package.
"""
