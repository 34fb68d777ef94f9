"""The Feast feature repository and Great Expectations suites for STAN's lifecycle features.

Arrives with issue #4 (lifecycle features on DuckDB, Feast views and services, GX suites).
May import ``stan_model`` (schema only) and ``stanflow.settings``.
"""
