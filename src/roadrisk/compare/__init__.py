"""``roadrisk compare``: put the run records of several environments side by side, honestly.

runs.py finds and reads records; analysis.py diffs devices, timings and accuracy; leaderboard.py
ranks every complete run, ensembles included; stats.py holds the ratio arithmetic; report.py writes
markdown and JSON; plot.py draws the pictures.
"""
