"""gexplain pipelines: what is computed (stages, config, runner, CLI)."""

__version__ = "0.1.0"
