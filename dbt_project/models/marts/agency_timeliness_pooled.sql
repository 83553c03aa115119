-- One row per organisation and period: its own steps due and in time, by month where every
-- month can be published, else pooled into the quarter, else the year (macros/pooling.sql),
-- never so that a suppressed month of agency_timeliness_monthly can be worked out. Periods
-- holding the as-of month are marked partial. Only the organisation's own figures.
with facts as (
    select agency, month, steps_due as due, steps_in_time as in_time
    from {{ ref('int_agency_timeliness_facts') }}
),

public as (
    select agency, month, steps_due as due, steps_in_time as in_time
    from {{ ref('agency_timeliness_monthly') }}
),

pooled as (
    {{ pooled_periods('facts', 'public', ['agency']) }}
)

select * from pooled
order by agency, period_start
