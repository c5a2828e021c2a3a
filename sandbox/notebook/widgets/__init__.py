"""The notebook's widgets: message inspector, service dashboard and call form.

Each is a plain object that shows itself as a live ipywidget in a kernel and as text and JSON
everywhere else (terminal IPython, nbconvert, a renderer without widget support).
"""
