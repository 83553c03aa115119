-- One row per agency and month: the agency's own timeliness against its own past ("personal
-- best"): steps due, steps in time, the share, the agency's own median share and its best
-- month. No other agency's figures in its rows, no workers; small cells suppressed.
with published as (
    {{ suppressed_cells(ref('int_agency_timeliness_facts'), ['agency'], 'month',
                        ['steps_due', 'steps_in_time'], [('steps_due', 'steps_in_time')],
                        totals=false) }}
),

own as (
    select
        *,
        median(share_steps_in_time) over (partition by agency) as own_median_share,
        max(share_steps_in_time) over (partition by agency) as best_share,
        max(month) over (partition by agency) as latest_month
    from published
)

select
    agency,
    month,
    steps_due,
    steps_in_time,
    share_steps_in_time,
    own_median_share,
    coalesce(share_steps_in_time = best_share, false) as is_best_month,
    month = latest_month as is_latest_month
from own
order by agency, month
