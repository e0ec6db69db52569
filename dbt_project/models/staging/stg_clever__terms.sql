select
    {{ record_columns() }},
    {{ txt("raw ->> 'name'") }} as name,
    -- the date part as written: parsing as a timestamp would shift it by the session's zone
    {{ date_prefix("raw ->> 'start_date'") }} as start_date,
    {{ date_prefix("raw ->> 'end_date'") }} as end_date
from ({{ current_records('terms') }}) as records
