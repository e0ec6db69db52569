"""The catalog of what the pipeline syncs: the Clever API versions and endpoints, and per
data type where it comes from and where it goes (landing endpoint, snapshot and its key,
staging model, mart, mass-archive guard). The pipeline, the guard, the config, the
validation suites and the tests read it here; the dbt project names the same models.
"""

from __future__ import annotations

from dataclasses import dataclass

API_VERSIONS = ("v3.0", "v3.1")

# The largest page Clever serves; above it the API answers 413.
MAX_PAGE_SIZE = 10_000

SNAPSHOT_SCHEMA = "clever_snapshots"
ENTITY_KEY = ("district_slug", "clever_id")


@dataclass(frozen=True)
class DataType:
    name: str
    endpoint: str  # the Clever endpoint whose extraction holds it
    definition: str | None  # its OpenAPI definition (the validation suite's source), if it is the endpoint's record
    staging_model: str | None
    snapshot: str | None  # its history (dbt snapshot in SNAPSHOT_SCHEMA); None: landed and validated only
    key: tuple[str, ...] = ENTITY_KEY  # the snapshot's unique key
    mart: str | None = None
    guarded: bool = False  # the mass-archive guard counts what a run would archive or change
    synced_by_default: bool = True  # a district's config syncs its endpoint unless it lists others

    @property
    def snapshot_relation(self) -> str:
        return f"{SNAPSHOT_SCHEMA}.{self.snapshot}"


def _entity(name: str, definition: str, mart: str) -> DataType:
    return DataType(name, name, definition, f"stg_clever__{name}", f"snap_clever__{name}", mart=mart, guarded=True)


DATA_TYPES: tuple[DataType, ...] = (
    _entity("districts", "District", "dim_districts"),
    _entity("schools", "School", "dim_schools"),
    _entity("users", "User", "dim_users"),
    _entity("sections", "Section", "dim_sections"),
    _entity("terms", "Term", "dim_terms"),
    _entity("courses", "Course", "dim_courses"),
    # A section's roster (students and teachers), read from the sections endpoint.
    DataType("enrollments", "sections", None, "stg_clever__section_enrollments", "snap_clever__section_enrollments",
             key=("district_slug", "section_id", "user_id", "role"), mart="fct_enrollments", guarded=True),
    # Synced only when a district's config asks for it: landed and validated, no history.
    DataType("resources", "resources", "Resource", None, None, synced_by_default=False),
)
DATA_TYPE = {data_type.name: data_type for data_type in DATA_TYPES}

# Endpoints: every data type that is its endpoint's own record, in sync order.
ENDPOINTS = tuple(t.name for t in DATA_TYPES if t.endpoint == t.name)
CORE_ENDPOINTS = tuple(e for e in ENDPOINTS if DATA_TYPE[e].synced_by_default)  # Secure Sync's data types
SNAPSHOTTED = tuple(t for t in DATA_TYPES if t.snapshot)
GUARDED = tuple(t for t in DATA_TYPES if t.guarded)


def check_endpoints(endpoints: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    unknown = [e for e in endpoints if e not in ENDPOINTS]
    if unknown:
        raise ValueError(f"unknown Clever endpoint(s) {unknown}; known: {list(ENDPOINTS)}")
    return tuple(endpoints)


def check_api_version(api_version: str) -> str:
    if api_version not in API_VERSIONS:
        raise ValueError(f"unsupported Clever API version {api_version!r}; supported: {list(API_VERSIONS)}")
    return api_version
