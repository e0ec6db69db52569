"""Airflow assets the DAGs share (light: imported while DAGs are parsed).

A district's successful dbt build updates ``MARTS`` with ``{"district": <slug>}`` in the
event's extra; the rollover report DAG is scheduled on it and renders the districts
whose builds triggered it.
"""

from __future__ import annotations

from airflow.sdk import Asset

MARTS = Asset(name="clever_marts", uri="clever-warehouse://clever_marts")
