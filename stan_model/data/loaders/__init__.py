"""Public-dataset loaders: map WeChat Big Data Challenge 2021 and KuaiRand into the raw contract.

Each loader reads the upstream CSV files strictly, writes ``raw/events/dt=*/part-0.parquet``,
``raw/users.parquet``, ``raw/items.parquet`` and ``raw/_world.json`` under a home folder, and
returns the :class:`~stan_model.schema.WorldManifest`. Problems in the files raise
:class:`LoaderError` naming the file, the column and/or the row.
"""

from stan_model.data.loaders._csv import LoaderError
from stan_model.data.loaders.kuairand import load_kuairand
from stan_model.data.loaders.wechat import load_wechat

__all__ = ["LoaderError", "load_kuairand", "load_wechat"]
