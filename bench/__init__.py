"""possync benchmarks: ``bench/run`` and the modules it imports; the ``bench_*.py`` scripts run on their own."""
