"""Data side of movrec: reading, cleaning, synthetic data, vocabularies, GloVe, datamodule.

Knows nothing about models.
"""
