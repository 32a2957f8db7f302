"""How runs are judged: baselines, validation choices, top-N and new-user metrics, the run's
``metrics.json`` and the sweep report."""
