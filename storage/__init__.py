"""gexplain storage: the only code that touches Zarr, files and object stores."""
