r"""Benchmarks and experiment tools of a pyg_mentor checkout (not part of the installed
package, like PyG's ``benchmark/``): one module per table, the suite runner ``run``,
the model comparison ``compare``, learning curves ``curves`` and shared helpers in
``_common``. Run a script as ``python benchmarks/<name>.py`` or
``python -m benchmarks.<name>``; results go to ``runs/benchmarks/`` unless ``--out``
names another place.
"""
