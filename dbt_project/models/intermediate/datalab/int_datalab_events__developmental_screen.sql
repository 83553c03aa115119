-- Data-lab outcome events: a completed developmental screen from any provider, or the start
-- of a pre-K (PK3/PK4) school enrollment.
with services as (
    select * from {{ ref('int_provider_services') }}
),

enrollments as (
    select * from {{ ref('stg_schools__enrollments') }}
    where snapshot_date <= {{ as_of_date() }}
)

select person_id, service_date as event_date
from services
where service_code = 'DEV_SCREEN' and outcome_code = 'COMPLETED'
union
select person_id, min(coalesce(entry_date, snapshot_date)) as event_date
from enrollments
where grade_level in ('PK3', 'PK4')
group by person_id
