"""gexplain pipelines: what is computed (stages, config, runner, CLI)."""
