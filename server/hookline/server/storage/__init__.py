"""Storage: the only place that runs queries. It hands out plain records
(records.py), never Peewee rows, to the rest of the server."""
