# The Airflow image docker-compose.yaml runs: the official Apache Airflow image (it brings
# the Celery, Redis and Postgres providers) plus this project's pinned packages, resolved
# against constraints.txt like `make setup` does. The code itself (dags/, plugins/,
# dbt_project/, expectations/, config/) is mounted by docker-compose.yaml, not copied, so
# a change needs no rebuild; a change to requirements.txt or constraints.txt does.
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/clever/
RUN pip install --no-cache-dir -r /opt/clever/requirements.txt -c /opt/clever/constraints.txt

ENV PYTHONPATH=/opt/airflow/plugins \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false
