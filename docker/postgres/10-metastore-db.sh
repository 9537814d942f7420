#!/bin/bash
# Runs once, on an empty data volume (postgres image: /docker-entrypoint-initdb.d): the Hive metastore's own
# role and database beside Airflow's. The password comes from the environment (docker/.env), never this file.
set -euo pipefail
: "${HIVE_METASTORE_DB_PASSWORD:?set HIVE_METASTORE_DB_PASSWORD in docker/.env}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v pw="$HIVE_METASTORE_DB_PASSWORD" <<'SQL'
CREATE ROLE hive LOGIN PASSWORD :'pw';
CREATE DATABASE metastore OWNER hive;
SQL
