"""peewee-migrate migrations, one file per schema change (NNN_name.py), each reversible."""
