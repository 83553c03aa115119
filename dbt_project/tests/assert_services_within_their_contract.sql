-- A service must fall within its contract's period and service codes. Such services are kept
-- (the child was served); this test flags them for the contract manager, as a warning.
{{ config(severity='warn') }}

with contracts as (
    {% call keep_first('contract_id', 'extract_date desc') %}
    select * from {{ ref('stg_providers__contracts') }}
    {% endcall %}
)

select
    s.service_key,
    s.contract_id,
    s.service_code,
    s.service_date,
    case
        when c.contract_id is null then 'no such contract'
        when s.service_date not between c.start_date and c.end_date
            then 'outside the contract period'
        else 'service code not in the contract'
    end as problem
from {{ ref('stg_providers__services') }} as s
left join contracts as c on c.contract_id = s.contract_id
where c.contract_id is null
   or s.service_date not between c.start_date and c.end_date
   or not {{ array_has("c.service_codes", "s.service_code") }}
