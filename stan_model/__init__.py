"""STAN model library: raw-data schema, lifecycle world simulator, dataset loaders, models.

Imports only torch, numpy, pyarrow (and pydantic / yaml for configs): never Airflow, Feast or KFP.
Importing this package does no I/O.
"""

__version__ = "0.1.0"
