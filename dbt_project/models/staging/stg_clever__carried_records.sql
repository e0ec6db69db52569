-- The landing rows that stand in for records quarantined in the current extraction
-- (their last clean version from an earlier approved one). Landing retention
-- (clever.retention) keeps these rows when it prunes older runs.
{% for endpoint in ['districts', 'schools', 'users', 'sections', 'terms', 'courses'] %}
select '{{ endpoint }}'::text as endpoint, carried.district_slug, carried.clever_id, carried.sync_run_id
from ({{ carried_records(endpoint) }}) as carried
{% if not loop.last %}union all{% endif %}
{% endfor %}
