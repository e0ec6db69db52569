"""The ``clever_discovery`` DAG: onboarding from Clever's token list (clever.discovery).

Built by the DAG factory (dags/clever_sync.py) when ``discovery: {enabled: true}`` is in
the districts file. Parsing imports only airflow.sdk and config; the task imports the rest
when it runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, get_current_context, task

from clever.config import DiscoverySettings

DAG_ID = "clever_discovery"


def build_discovery_dag(settings: DiscoverySettings) -> DAG:
    with DAG(
        dag_id=DAG_ID,
        description="Districts that connected the application in Clever: stores their tokens, adds their DAGs, "
                    "disconnects those that left",
        schedule=settings.schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "clever-warehouse", "retries": 2, "retry_delay": timedelta(minutes=5)},
        params={"allow_mass_disconnect": Param(
            False, type="boolean",
            description="Disconnect every district whose token left Clever's list, even more than "
                        "max_disconnect_share of them at once (only after checking the application's Clever "
                        "dashboard).")},
        tags=["clever", "operations"],
        is_paused_upon_creation=False,  # turned on in the config: no second switch in the UI
        doc_md=__doc__,
    ) as dag:

        @task(execution_timeout=timedelta(minutes=30))
        def discover_districts() -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from clever.config import configured_identities, load_discovery, load_districts_tolerant
            from clever.connections import app_credentials, store_district_token, warehouse_target
            from clever.discovery import discover

            settings = load_discovery()
            districts = load_districts_tolerant()[0]
            slugs, ids = configured_identities()  # entries with errors keep their slug and district
            claimed = (slugs - {d.slug for d in districts}, ids - {d.clever_district_id for d in districts})
            result = discover(warehouse_target().conninfo, app_credentials(settings.app_conn_id), settings,
                              districts, store_district_token, claimed=claimed,
                              allow_mass_disconnect=bool(get_current_context()["params"].get("allow_mass_disconnect")))
            print(f"discovery: {result.listed} token(s) listed; onboarded {result.onboarded or 'none'}; "
                  f"reconnected {result.reconnected or 'none'}; disconnected {result.disconnected or 'none'}")
            if result.failed:
                raise AirflowFailException(
                    f"discovery: {len(result.failed)} Clever district(s) could not be registered or their token "
                    f"stored ({', '.join(result.failed)}; see the log); every other district was handled")
            if result.held:
                raise AirflowFailException(
                    f"discovery held: {len(result.held)} districts left Clever's token list at once "
                    f"({', '.join(result.held)}), more than the limit; none was disconnected. Trigger "
                    "clever_discovery with allow_mass_disconnect=true if they really left.")
            return result.as_dict()

        discover_districts()
    return dag
