"""``python -m gexplain.pipelines.cli``: the ``gexplain`` command."""

from gexplain.pipelines.cli.main import run_main

run_main()
