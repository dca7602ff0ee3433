"""The roof: the health dashboard, the probes, the metrics, the pages, the API docs views and
the demo data. It may read every app; no app imports it."""
