"""Load tests for livecart: Locust scenarios (locustfile.py) and the precise bench (bench.py)."""
