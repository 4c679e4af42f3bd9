"""Kedro glue: the project's hooks (``hooks``, ``integrity``, ``tracking``), the lineage records
they check (``lineage``) and the ``DaskRunner`` (``runner``). ``settings.py`` and
``pipeline_registry.py`` stay at the package root, where Kedro looks for them. See
``docs/architecture.md``."""
