"""Shared fixtures: the real broker, PostgreSQL and model server of devstack/."""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.postgres",
    "tests.fixtures.model_server",
    "tests.fixtures.worker",
]
