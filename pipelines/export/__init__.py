"""Export a store to other ecosystems: AnnData (``.h5ad`` and AnnData-on-Zarr) for scanpy users."""

from gexplain.pipelines.export.to_anndata import ExportReport, export_anndata, store_to_anndata

__all__ = ["ExportReport", "export_anndata", "store_to_anndata"]
