"""The registered DE methods: each module defines ``METHOD``, a :class:`gexplain.pipelines.de.registry.DeMethod`."""
