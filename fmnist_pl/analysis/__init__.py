"""Analysis of results on disk: classification metrics, paired statistics, and the summary.

``metrics`` (one run's classification report), ``stats`` (paired tests), ``summary`` (grouping
by structured key, rankings, significance, observations -> ``summary.json``, computed once).
"""
