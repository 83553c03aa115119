-- One row per inspection that counts as an environmental investigation (a lead risk
-- assessment, per qualifying_steps) of a dwelling, as housing knew it on the as-of date.
with inspections as (
    {% call latest_version('housing_inspections') %}
    select * from {{ ref('stg_housing__inspections') }}
    where extract_date <= {{ as_of_date() }} and inspection_date <= {{ as_of_date() }}
    {% endcall %}
)

select i.inspection_key, i.address_key, i.inspection_date
from inspections as i
inner join {{ ref('qualifying_steps') }} as q
    on q.rule_code = 'ENVIRONMENTAL_INVESTIGATION_OVERDUE'
    and q.code_type = 'inspection_type'
    and q.code = i.inspection_type
