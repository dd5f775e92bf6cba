"""Load tests for livecart: Locust scenarios (locustfile.py) and the precise benchmark (bench.py)."""
