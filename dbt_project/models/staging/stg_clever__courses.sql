select
    {{ record_columns() }},
    {{ txt("raw ->> 'name'") }} as name,
    {{ txt("raw ->> 'number'") }} as number
from ({{ current_records('courses') }}) as records
