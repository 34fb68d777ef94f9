"""STAN's lifecycle features: computed on DuckDB, guarded by Great Expectations, served by Feast.

The Feast repo proper is declarative -- ``feature_store.yaml`` (+ ``feature_store.redis.yaml``) and
``definitions.py``; everything else here is imperative and listed in ``.feastignore``:

* ``build.py``     ``build_features(home, day)``: SQL over the raw events -> offline partitions
* ``suites.py``    the Great Expectations suites, as code; ``gx_runner.py`` runs them
* ``validate.py``  ``validate_features(home, day)``: raw + feature suites, Data Docs, the record
  that ``materialize`` requires
* ``store.py``     ``materialize(home, day)``, ``get_online_features(...)``: Feast for one home
* ``training.py``  ``training_set(home, start, end)``: point-in-time joins via Feast
* ``layout.py``    where it all lives under ``$STANFLOW_HOME``; ``contract.py`` table schemas

Imports ``stan_model`` (schema, raw store, the lifecycle rule's constants) and
``stanflow.settings``; importing any module here does no I/O.
"""
