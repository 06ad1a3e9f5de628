"""gexplain cluster: where work runs (Ray and Dask runtimes, actor pools, resources)."""
