"""Dask pipelines run by the CLI: ingest, simulate, pretrain, evaluate."""
