"""Presenting a study's answer: the terminal report (`terminal.py`) and `report.md` with its plots
(`markdown.py`).

Imports: `distsim.runner` (the plan and stored results) and `distsim.stats`.
"""
