"""The web UI: a Flask blueprint package (server-rendered templates, our own CSS and JavaScript).

Pages arrive with the web UI issue; the package exists now so that packaging and imports are settled early.
"""
