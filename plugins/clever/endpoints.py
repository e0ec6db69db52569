"""The Clever Data API endpoints this pipeline syncs, and the API versions it speaks."""

from __future__ import annotations

API_VERSIONS = ("v3.0", "v3.1")

# Synced by default: every data type Clever's Secure Sync certification covers.
CORE_ENDPOINTS = ("districts", "schools", "users", "sections", "terms", "courses")
# Synced only when a district's config asks for it.
OPTIONAL_ENDPOINTS = ("resources",)
ENDPOINTS = CORE_ENDPOINTS + OPTIONAL_ENDPOINTS

# The largest page Clever serves; above it the API answers 413.
MAX_PAGE_SIZE = 10_000


def check_endpoints(endpoints: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    unknown = [e for e in endpoints if e not in ENDPOINTS]
    if unknown:
        raise ValueError(f"unknown Clever endpoint(s) {unknown}; known: {list(ENDPOINTS)}")
    return tuple(endpoints)


def check_api_version(api_version: str) -> str:
    if api_version not in API_VERSIONS:
        raise ValueError(f"unsupported Clever API version {api_version!r}; supported: {list(API_VERSIONS)}")
    return api_version
