"""Database layer: the Peewee database, models, migrations and query helpers."""
