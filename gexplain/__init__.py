"""gexplain: reproducible gene-level explanations of expression cohorts at scale.

Installed, the repository's folders are subpackages of this one: ``gexplain.storage`` (where data
lives), ``gexplain.cluster`` (where it runs) and ``gexplain.pipelines`` (what is computed).
"""

__version__ = "0.1.0"
