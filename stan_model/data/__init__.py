"""Raw data: the lifecycle world simulator, public-dataset loaders and partitioned Parquet I/O."""
