# notebooks/*.py are the jupytext pairs of the notebooks (percent format), not test modules: pytest must never import
# (and so run) them, not even with --doctest-modules or wider python_files. nbval collects the .ipynb files.
collect_ignore_glob = ["*.py"]
