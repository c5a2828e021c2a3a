"""The Jupyter layer: the only part of sandbox that imports IPython and ipywidgets."""
