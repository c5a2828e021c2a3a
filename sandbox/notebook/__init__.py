"""The Jupyter layer: the only part of sandbox that imports ipywidgets, and with `sandbox shell`
(IPython's terminal) and the export of cells, the only one that imports IPython."""
