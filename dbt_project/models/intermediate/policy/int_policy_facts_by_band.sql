-- One row per month and band: children confirmed that month (once, in the band of the month's
-- first confirmation) and the follow-up episodes whose window ran its course that month, with
-- how many got the step in time. Not published as is: the policy marts suppress small cells.
with confirmed as (
    select
        'children_confirmed' as measure, person_id,
        date_trunc('month', confirmation_date) as month,
        {{ value_at_min("band", "confirmation_date") }} as band
    from {{ ref('int_lead_confirmations') }}
    group by all
),

episodes as (
    {{ followup_episodes() }}
),

cells as (
    select month, band, measure, count(*) as n from confirmed group by all
    union all
    select date_trunc('month', due_date), band, step || '_due', count(*)
    from episodes group by all
    union all
    select date_trunc('month', due_date), band, step || '_in_time',
           count(*) filter (where step_in_time)
    from episodes group by all
)

select
    {{ month_label("month") }} as month,
    band,
    {{ measure_columns(['children_confirmed']) }}
from cells
group by all
