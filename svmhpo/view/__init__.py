"""The read-only views of studies: catalog, plots, report, dashboard, progress. Never imports torch."""
