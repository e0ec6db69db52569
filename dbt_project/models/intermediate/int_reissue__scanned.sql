{# How far int_reissue__candidates has read each district's snapshots: per data type, the
   latest snapshot time. It depends on the candidates, so it is written after them, and
   the candidates' next build reads only the versions written since. #}
-- depends_on: {{ ref('int_reissue__candidates') }}
{% for data_type, snapshot, _ in reissue_data_types() %}
select w.district_slug, '{{ data_type }}'::text as data_type, w.covered_until as scanned_through
from ({{ district_watermarks(ref(snapshot), 'dbt_valid_from', full_refresh_uncovers=false) }}) as w
{% if not loop.last %}union all{% endif %}
{% endfor %}
