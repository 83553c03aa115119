-- One row per month and ZIP: children tested, elevated and confirmed that month (each child
-- counted once a month, in the ZIP of its first such test, so ZIPs add up to the city), and the
-- follow-up episodes whose window ran its course that month, with how many got the step in
-- time. Not published as is: the policy marts suppress small cells.
with tests as (
    select * from {{ ref('int_lead_tests_classified') }} where is_child
),

child_months as (
    select
        'children_tested' as measure, person_id, date_trunc('month', sample_date) as month,
        {{ value_at_min("coalesce(zip5, 'UNKNOWN')", "sample_date") }} as zip5
    from tests group by all
    union all
    select
        'children_elevated', person_id, date_trunc('month', sample_date),
        {{ value_at_min("coalesce(zip5, 'UNKNOWN')", "sample_date") }}
    from tests where is_elevated group by all
    union all
    select
        'children_confirmed', person_id, date_trunc('month', confirmation_date),
        {{ value_at_min("coalesce(zip5, 'UNKNOWN')", "confirmation_date") }}
    from {{ ref('int_lead_confirmations') }} group by all
),

episodes as (
    {{ followup_episodes() }}
),

cells as (
    select month, zip5, measure, count(*) as n from child_months group by all
    union all
    select date_trunc('month', due_date), coalesce(zip5, 'UNKNOWN'), step || '_due', count(*)
    from episodes group by all
    union all
    select date_trunc('month', due_date), coalesce(zip5, 'UNKNOWN'), step || '_in_time',
           count(*) filter (where step_in_time)
    from episodes group by all
)

select
    {{ month_label("month") }} as month,
    zip5,
    {{ measure_columns() }}
from cells
group by all
