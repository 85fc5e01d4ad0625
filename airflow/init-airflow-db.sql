-- Airflow keeps its metadata in its own database of the same server.
CREATE DATABASE airflow OWNER rtds;
